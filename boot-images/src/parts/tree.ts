// Staging a file tree that becomes an initramfs or a root filesystem: host files copied at the
// same path (their libraries with them), recipe files, busybox applet links. Symlinks are
// followed when copying, so the tree holds real files whatever /usr merging the host does.
import { copyFile, chmod, lstat, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import type { CommandRunner } from "../core/exec.js";
import { sharedLibraries } from "../system/elf.js";

export class Tree {
  constructor(readonly root: string) {}

  private at(dest: string): string {
    const p = join(this.root, dest);
    if (relative(this.root, p).startsWith("..")) throw new Error(`path escapes the tree: ${dest}`);
    return p;
  }

  async dirs(...paths: string[]): Promise<void> {
    for (const p of paths) await mkdir(this.at(p), { recursive: true });
  }

  async exists(dest: string): Promise<boolean> {
    return lstat(this.at(dest)).then(
      () => true,
      () => false,
    );
  }

  async copy(src: string, dest = src, mode?: number): Promise<void> {
    const to = this.at(dest);
    await mkdir(dirname(to), { recursive: true });
    await copyFile(src, to);
    if (mode !== undefined) await chmod(to, mode);
  }

  async text(dest: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const to = this.at(dest);
    await mkdir(dirname(to), { recursive: true });
    await writeFile(to, content);
    await chmod(to, mode);
  }

  async link(dest: string, target: string): Promise<void> {
    const to = this.at(dest);
    await mkdir(dirname(to), { recursive: true });
    await symlink(target, to);
  }

  /** Copies programs at their own paths together with every shared library they load. */
  async programs(run: CommandRunner, programs: readonly string[]): Promise<void> {
    for (const p of programs) await this.copy(p);
    for (const lib of await sharedLibraries(run, programs)) {
      if (!(await this.exists(lib))) await this.copy(lib);
    }
  }

  /** Installs a static busybox at /bin/busybox and links every applet where nothing else is. */
  async busybox(run: CommandRunner, busybox: string): Promise<void> {
    await this.copy(busybox, "/bin/busybox", 0o755);
    const { stdout } = await run.run(busybox, ["--list-full"]);
    for (const applet of stdout.split("\n").filter(Boolean)) {
      const dest = `/${applet}`;
      if (await this.exists(dest)) continue;
      const rel = relative(dirname(this.at(dest)), this.at("/bin/busybox"));
      await this.link(dest, rel);
    }
  }

  async recipeFile(recipesDir: string, name: string, dest: string, mode = 0o644): Promise<void> {
    await this.text(dest, await readFile(join(recipesDir, name)), mode);
  }
}

/** A fixed timestamp for every file, so archives do not change with the time of the build. */
export const SOURCE_DATE_EPOCH = 1_767_225_600; // 2026-01-01T00:00:00Z

export async function normalizeTimes(run: CommandRunner, root: string): Promise<void> {
  await run.run("find", [root, "-exec", "touch", "-h", "-d", `@${SOURCE_DATE_EPOCH}`, "{}", "+"]);
}
