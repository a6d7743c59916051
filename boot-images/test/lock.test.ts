import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireLock } from "../src/core/lock.js";

describe("build lock", () => {
  const dirs: string[] = [];
  const tempDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), "weft-lock-"));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  it("is taken, refused while held and free again once released", async () => {
    const path = join(await tempDir(), "r.lock");
    const release = await acquireLock(path, "r");
    expect((await readFile(path, "utf8")).trim()).toBe(String(process.pid));
    await expect(acquireLock(path, "r")).rejects.toThrow(/another build of r is running/);
    await release();
    await (
      await acquireLock(path, "r")
    )();
  });

  it("takes over a lock whose process has exited", async () => {
    const path = join(await tempDir(), "r.lock");
    const child = spawn("true");
    await new Promise((r) => child.once("exit", r));
    await writeFile(path, `${child.pid}\n`);
    const release = await acquireLock(path, "r");
    expect((await readFile(path, "utf8")).trim()).toBe(String(process.pid));
    await release();
  });
});
