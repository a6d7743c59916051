// Packs a staged tree into an initramfs: a newc cpio archive (owner root, fixed timestamps,
// sorted names, device-independent) compressed with zstd, which Debian's kernel unpacks
// (CONFIG_RD_ZSTD).
import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CommandRunner } from "../core/exec.js";
import { normalizeTimes } from "./tree.js";

async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(r);
      if (e.isDirectory()) await walk(join(dir, e.name), r);
    }
  };
  await walk(root, "");
  return out.sort();
}

export async function packInitramfs(
  run: CommandRunner,
  root: string,
  outFile: string,
  zstdLevel: number,
): Promise<void> {
  await normalizeTimes(run, root);
  const list = `${outFile}.list`;
  const cpio = `${outFile}.cpio`;
  await writeFile(list, `${(await listTree(root)).join("\n")}\n`);
  await run.run("cpio", ["-o", "-H", "newc", "--reproducible", "-R", "0:0", "--quiet"], {
    cwd: root,
    stdinFile: list,
    stdoutFile: cpio,
  });
  await run.run("zstd", ["-q", "-f", "-T0", `-${zstdLevel}`, cpio, "-o", outFile]);
  await rm(list);
  await rm(cpio);
}
