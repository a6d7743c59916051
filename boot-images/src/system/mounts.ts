// Mount points under a folder, from /proc/self/mounts. debootstrap mounts /proc and /sys in the
// target while it runs; a failed run can leave them behind, and deleting a folder that still has
// /proc or /sys mounted under it would reach into the live system.
import { readFile } from "node:fs/promises";
import type { CommandRunner } from "../core/exec.js";

/** Mount points in a mounts table (octal escapes decoded) that lie under `dir`, deepest first. */
export function mountsUnder(mountsTable: string, dir: string): string[] {
  const base = dir.replace(/\/+$/, "");
  const out: string[] = [];
  for (const line of mountsTable.split("\n")) {
    const field = line.split(" ")[1];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    if (mp === base || mp.startsWith(`${base}/`)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length || a.localeCompare(b));
}

export async function unmountUnder(run: CommandRunner, dir: string): Promise<void> {
  const table = await readFile("/proc/self/mounts", "utf8");
  for (const mp of mountsUnder(table, dir)) await run.run("umount", ["--lazy", mp]);
}
