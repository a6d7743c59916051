// Packs a staged tree into an initramfs: a newc cpio archive (owner root, fixed timestamps,
// sorted names, device-independent), compressed with zstd (CONFIG_RD_ZSTD) where size matters
// most, or with lz4 in its legacy frame format (CONFIG_RD_LZ4; the kernel reads no other lz4
// frame) where unpacking time matters: under TCG the kernel unpacks lz4 several seconds sooner.
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

export type InitramfsCompression = { kind: "zstd"; level: number } | { kind: "lz4" };

export async function packInitramfs(
  run: CommandRunner,
  root: string,
  outFile: string,
  compression: InitramfsCompression,
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
  if (compression.kind === "zstd")
    await run.run("zstd", ["-q", "-f", "-T0", `-${compression.level}`, cpio, "-o", outFile]);
  else await run.run("lz4", ["-q", "-f", "-l", "-9", cpio, outFile]);
  await rm(list);
  await rm(cpio);
}
