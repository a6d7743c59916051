// Measures install-host's image path (HTTP -> sha256 -> gunzip -> positional writes) onto a
// loop device, against `gzip -dc | dd` as a baseline. Needs root; attaches one loop device to a
// temp file and detaches it at the end.
//
//   npx tsx agent/test/bench/stream-to-loop.ts [MiB=256]
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { streamImage } from "../../src/image-stream.js";

const MiB = 1 << 20;

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 256);
  // A quarter random (file contents), the rest zeros (free space), like a fresh host image.
  const raw = Buffer.concat([randomBytes((total / 4) * MiB), Buffer.alloc(((total * 3) / 4) * MiB)]);
  const gz = gzipSync(raw, { level: 6 });
  const sha256 = createHash("sha256").update(gz).digest("hex");
  const dir = await mkdtemp(join(tmpdir(), "weft-bench-"));
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-length": String(gz.length) });
    res.end(gz);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/img.gz`;
  const backing = join(dir, "disk.img");
  const fh = await open(backing, "w");
  await fh.truncate(raw.length + 16 * MiB);
  await fh.close();
  const loop = execFileSync("losetup", ["-f", "--show", backing]).toString().trim();
  try {
    const t0 = Date.now();
    const r = await streamImage({ url, sha256, size: gz.length, target: loop });
    const s = (Date.now() - t0) / 1000;
    console.log(
      `agent stream -> ${loop}: ${r.writtenBytes / MiB} MiB from ${(gz.length / MiB).toFixed(1)} MiB gzip in ${s.toFixed(2)} s = ${(r.writtenBytes / MiB / s).toFixed(1)} MiB/s`,
    );
    const gzFile = join(dir, "img.gz");
    await writeFile(gzFile, gz);
    const t1 = Date.now();
    execFileSync("sh", ["-c", `gzip -dc '${gzFile}' | dd of='${loop}' bs=4M conv=fsync status=none`]);
    const s1 = (Date.now() - t1) / 1000;
    console.log(
      `gzip -dc | dd -> ${loop}: ${total} MiB in ${s1.toFixed(2)} s = ${(total / s1).toFixed(1)} MiB/s`,
    );
  } finally {
    execFileSync("losetup", ["-d", loop]);
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
