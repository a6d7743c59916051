// One build of a recipe at a time per cache: a lock file holding the builder's PID. A lock
// whose process is gone is stale and taken over.
import { open, readFile, rm } from "node:fs/promises";
import { ImageError } from "./errors.js";

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

export async function acquireLock(path: string, what: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      if (Number.isSafeInteger(pid) && pid > 0 && alive(pid)) {
        throw new ImageError(
          "build-failed",
          `another build of ${what} is running (pid ${pid}, lock ${path})`,
        );
      }
      await rm(path, { force: true });
    }
  }
  throw new ImageError("build-failed", `cannot take the lock ${path}`);
}
