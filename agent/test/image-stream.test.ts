import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fakeClock } from "../src/clock.js";
import { streamImage } from "../src/image-stream.js";
import { memoryLogger } from "../src/log.js";
import { serveImage, type ImageServer } from "./helpers/image-server.js";
import { cleanup, tempDir } from "./helpers/tmp.js";

// 4 MiB of half-random data: compresses to about 2 MiB, so cuts land mid-stream.
const raw = Buffer.concat(
  Array.from({ length: 64 }, (_, i) => Buffer.concat([randomBytes(32 * 1024), Buffer.alloc(32 * 1024, i)])),
);
const gz = gzipSync(raw);
const sha256 = createHash("sha256").update(gz).digest("hex");

let dir: string;
let server: ImageServer | undefined;
beforeAll(async () => {
  dir = await tempDir();
  return () => cleanup(dir);
});
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function target(name: string, fill = 0): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, Buffer.alloc(raw.length + 4096, fill));
  return p;
}

const opts = (
  url: string,
  path: string,
  extra: Partial<Parameters<typeof streamImage>[0]> = {},
): Parameters<typeof streamImage>[0] => ({
  url,
  sha256,
  size: gz.length,
  target: path,
  clock: fakeClock(),
  log: memoryLogger(),
  ...extra,
});

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("streaming a gzip image to a device", { timeout: 30_000 }, () => {
  it("writes the decompressed bytes and checks the sha256 of the compressed ones", async () => {
    server = await serveImage(gz);
    const path = await target("plain");
    const seen: number[] = [];
    const r = await streamImage(opts(server.url, path, { onProgress: (p) => seen.push(p.received) }));
    expect(r).toMatchObject({
      compressedBytes: gz.length,
      writtenBytes: raw.length,
      sha256,
      resumes: 0,
      rangeIgnored: 0,
    });
    const out = await readFile(path);
    expect(out.subarray(0, raw.length).equals(raw)).toBe(true);
    expect(seen.at(-1)).toBe(gz.length);
    expect(server.requests).toEqual([{ range: null, status: 200 }]);
  });

  it("resumes with a Range request after the connection is cut, twice, feeding the same gunzip", async () => {
    server = await serveImage(gz, { cutAfter: [600_000, 500_000], chunk: 16 * 1024 });
    const path = await target("resumed");
    const clock = fakeClock();
    const r = await streamImage(opts(server.url, path, { clock }));
    expect(r).toMatchObject({ compressedBytes: gz.length, writtenBytes: raw.length, sha256, resumes: 2 });
    expect((await readFile(path)).subarray(0, raw.length).equals(raw)).toBe(true);
    expect(server.requests.map((q) => q.status)).toEqual([200, 206, 206]);
    const offsets = server.requests.slice(1).map((q) => Number(/^bytes=(\d+)-$/.exec(q.range ?? "")?.[1]));
    expect(offsets[0]).toBeGreaterThan(0);
    expect(offsets[1]).toBeGreaterThan(offsets[0] ?? 0);
    expect(clock.sleeps).toEqual([1000, 1000]); // waits come from the injected clock
  });

  it("accepts an image whose every byte arrived even when the connection then breaks", async () => {
    server = await serveImage(gz, { dropAtEnd: true, chunk: 64 * 1024 });
    const path = await target("dropped-at-end");
    const r = await streamImage(opts(server.url, path, { clock: fakeClock() }));
    expect(r).toMatchObject({ compressedBytes: gz.length, writtenBytes: raw.length, sha256 });
    expect(server.requests.length).toBe(1);
  });

  it("handles a server that ignores Range by discarding the bytes it already has", async () => {
    server = await serveImage(gz, { cutAfter: [700_000], ignoreRange: true, chunk: 16 * 1024 });
    const path = await target("ignored");
    const r = await streamImage(opts(server.url, path));
    expect(r).toMatchObject({
      compressedBytes: gz.length,
      writtenBytes: raw.length,
      sha256,
      resumes: 1,
      rangeIgnored: 1,
    });
    expect((await readFile(path)).subarray(0, raw.length).equals(raw)).toBe(true);
    expect(server.requests[1]).toMatchObject({ status: 200 });
    expect(server.requests[1]?.range).toMatch(/^bytes=\d+-$/);
  });

  it("aborts a request that goes silent and resumes it", async () => {
    server = await serveImage(gz, { stallAfter: [400_000], chunk: 16 * 1024 });
    const path = await target("stalled");
    const log = memoryLogger();
    const r = await streamImage(opts(server.url, path, { stallTimeoutMs: 300, log }));
    expect(r).toMatchObject({ compressedBytes: gz.length, writtenBytes: raw.length, sha256, resumes: 1 });
    expect(server.requests.map((q) => q.status)).toEqual([200, 206]);
    expect(log.lines.some((l) => l.includes("no data for 300 ms"))).toBe(true);
    expect((await readFile(path)).subarray(0, raw.length).equals(raw)).toBe(true);
  });

  it("refuses a wrong sha256 with IMAGE_CHECKSUM_MISMATCH", async () => {
    server = await serveImage(gz);
    const path = await target("badsum");
    await expect(streamImage(opts(server.url, path, { sha256: "0".repeat(64) }))).rejects.toMatchObject({
      type: "integrity",
      code: "IMAGE_CHECKSUM_MISMATCH",
      details: { expected: "0".repeat(64), actual: sha256 },
    });
  });

  it("refuses a size that differs before writing anything", async () => {
    server = await serveImage(gz);
    const path = await target("badsize", 0xaa);
    await expect(streamImage(opts(server.url, path, { size: gz.length + 1 }))).rejects.toMatchObject({
      code: "IMAGE_SIZE_MISMATCH",
    });
    expect((await readFile(path)).every((b) => b === 0xaa)).toBe(true);
  });

  it("refuses data that is not gzip, an image larger than the partition, and HTTP errors", async () => {
    const junk = randomBytes(100_000);
    server = await serveImage(junk);
    const junkSum = createHash("sha256").update(junk).digest("hex");
    await expect(
      streamImage(opts(server.url, await target("junk"), { size: junk.length, sha256: junkSum })),
    ).rejects.toMatchObject({
      code: "IMAGE_CORRUPT",
    });
    await server.close();
    server = await serveImage(gz);
    await expect(
      streamImage(opts(server.url, await target("small"), { capacity: 1 << 20 })),
    ).rejects.toMatchObject({
      code: "IMAGE_TOO_LARGE",
    });
    await server.close();
    server = await serveImage(gz, { status: 404 });
    await expect(streamImage(opts(server.url, await target("404")))).rejects.toMatchObject({
      code: "IMAGE_HTTP_ERROR",
      details: { status: 404 },
    });
    expect(server.requests).toHaveLength(1); // a 404 is final, not retried
  });

  it("gives up with IMAGE_DOWNLOAD_FAILED when the server never lets a byte through", async () => {
    server = await serveImage(gz, { cutAfter: Array.from({ length: 20 }, () => 0) });
    const clock = fakeClock();
    await expect(
      streamImage(opts(server.url, await target("dead"), { clock, maxFailuresWithoutProgress: 3 })),
    ).rejects.toMatchObject({
      code: "IMAGE_DOWNLOAD_FAILED",
    });
    expect(clock.sleeps).toEqual([1000, 2000, 3000]);
  });
});
