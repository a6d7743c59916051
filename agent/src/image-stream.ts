// Streams a gzip-compressed image from HTTP straight onto a block device (or a file standing in
// for one): HTTP body -> sha256 of the compressed bytes -> gunzip -> positional writes.
//
// Resuming: the position that matters is the offset in the *compressed* file. When the
// connection breaks, the gunzip stream and the hash stay alive; the next request asks for
// `Range: bytes=<received>-` and its bytes are fed to the same gunzip, so decompression goes on
// exactly where it stopped and nothing already written is rewritten. A server that ignores the
// range and answers 200 with the whole file is handled by discarding the first <received>
// bytes of that answer (the end-to-end sha256 still guards against a file that changed).
// A 206 whose Content-Range does not start at <received> is refused.
//
// Integrity: the compressed length must equal the expected size (checked against
// Content-Length/Content-Range up front, and counted) and the sha256 of the compressed bytes
// must match; otherwise the stream fails with IMAGE_SIZE_MISMATCH / IMAGE_CHECKSUM_MISMATCH.
import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { systemClock, type Clock } from "./clock.js";
import type { Fetch } from "./client.js";
import { AgentError, isAgentError } from "./errors.js";
import { silentLogger, type Logger } from "./log.js";

export interface StreamProgress {
  /** Compressed bytes received and hashed. */
  received: number;
  /** Decompressed bytes written to the target. */
  written: number;
  total: number;
}

export interface StreamImageOptions {
  url: string;
  sha256: string;
  /** Size of the compressed file in bytes. */
  size: number;
  /** Block device or file; opened for writing without truncation. */
  target: string;
  /** Largest number of decompressed bytes the target can take (null: no limit). */
  capacity?: number | null;
  fetch?: Fetch;
  clock?: Clock;
  log?: Logger;
  /** Consecutive failed requests (no new bytes in between) before giving up. */
  maxFailuresWithoutProgress?: number;
  retryDelayMs?: number;
  /**
   * A request that delivers no byte for this long (waiting on the network only, not on the
   * disk) is aborted and resumed; without it a silent peer could hold the install forever.
   */
  stallTimeoutMs?: number;
  onProgress?: (p: StreamProgress) => void;
}

export interface StreamResult {
  compressedBytes: number;
  writtenBytes: number;
  sha256: string;
  /** Requests after the first (range resumes and restarts). */
  resumes: number;
  /** Answers that ignored the range (the prefix was re-read and discarded). */
  rangeIgnored: number;
  durationMs: number;
}

class Transient extends Error {}

function parseContentRange(v: string | null): { start: number; end: number; total: number | null } | null {
  const m = v === null ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? null : Number(m[3]) };
}

export async function streamImage(opts: StreamImageOptions): Promise<StreamResult> {
  const fetch = opts.fetch ?? globalThis.fetch;
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLogger;
  // 1 + 2 + ... + 10 s, then every 10 s: about four minutes without a byte before giving up,
  // enough for the controller serving the image to be restarted.
  const maxFailures = opts.maxFailuresWithoutProgress ?? 30;
  const retryDelayMs = opts.retryDelayMs ?? 1000;
  const stallTimeoutMs = opts.stallTimeoutMs ?? 60_000;
  const capacity = opts.capacity ?? null;
  const started = clock.now();
  const hash = createHash("sha256");
  let received = 0;
  let written = 0;
  let resumes = 0;
  let rangeIgnored = 0;
  let failures = 0;
  let abort: AbortController | undefined;

  const sizeMismatch = (actual: number, how: string): AgentError =>
    new AgentError(
      "integrity",
      "IMAGE_SIZE_MISMATCH",
      `image is ${actual} bytes (${how}), expected ${opts.size}`,
      {
        details: { expected: opts.size, actual, url: opts.url },
      },
    );

  /** One HTTP request from `received` on; yields the new compressed bytes. */
  async function* request(): AsyncGenerator<Buffer> {
    const ac = new AbortController();
    abort = ac;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => ac.abort(new Error(`no data for ${stallTimeoutMs} ms`)), stallTimeoutMs);
    };
    const disarm = (): void => clearTimeout(timer);
    try {
      arm();
      yield* body();
    } finally {
      disarm();
    }

    async function* body(): AsyncGenerator<Buffer> {
      const headers: Record<string, string> = {};
      if (received > 0) headers.range = `bytes=${received}-`;
      let res: Response;
      try {
        res = await fetch(opts.url, { headers, signal: ac.signal });
      } catch (err) {
        const reason = ac.signal.aborted ? (ac.signal.reason as Error | undefined) : undefined;
        throw new Transient(
          `request failed: ${reason?.message ?? (err as { cause?: Error }).cause?.message ?? (err as Error).message}`,
        );
      }
      let skip = 0;
      const length = res.headers.get("content-length");
      if (res.status === 206) {
        const cr = parseContentRange(res.headers.get("content-range"));
        if (!cr || cr.start !== received) {
          throw new AgentError(
            "integrity",
            "IMAGE_RANGE_MISMATCH",
            `asked for bytes ${received}-, got ${res.headers.get("content-range") ?? "no Content-Range"}`,
            {
              details: { url: opts.url, offset: received },
            },
          );
        }
        if (cr.total !== null && cr.total !== opts.size) throw sizeMismatch(cr.total, "Content-Range");
      } else if (res.status === 200) {
        if (length !== null && Number(length) !== opts.size)
          throw sizeMismatch(Number(length), "Content-Length");
        if (received > 0) {
          rangeIgnored++;
          skip = received;
          log.warn("image server ignored the range request; re-reading and discarding the prefix", {
            offset: received,
          });
        }
      } else if (res.status === 416) {
        throw sizeMismatch(received, `server has no bytes after ${received}`);
      } else if (res.status >= 500 || res.status === 429 || res.status === 408) {
        throw new Transient(`HTTP ${res.status}`);
      } else {
        throw new AgentError("unavailable", "IMAGE_HTTP_ERROR", `GET ${opts.url}: HTTP ${res.status}`, {
          details: { url: opts.url, status: res.status },
        });
      }
      if (!res.body) throw new Transient("response without a body");
      try {
        for await (const part of res.body) {
          disarm();
          let chunk = Buffer.from(part.buffer, part.byteOffset, part.byteLength);
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          if (received + chunk.length > opts.size)
            throw sizeMismatch(received + chunk.length, "more bytes than expected");
          hash.update(chunk);
          received += chunk.length;
          failures = 0;
          yield chunk;
          arm();
        }
      } catch (err) {
        if (err instanceof AgentError) throw err;
        // Every byte arrived and only the end of the connection went wrong: nothing is
        // missing, and the sha256 check decides whether the bytes are right.
        if (received === opts.size) return;
        const reason = ac.signal.aborted ? (ac.signal.reason as Error | undefined) : undefined;
        throw new Transient(
          `connection broken at byte ${received}: ${reason?.message ?? (err as { cause?: Error }).cause?.message ?? (err as Error).message}`,
        );
      }
    }
  }

  async function* compressed(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        try {
          if (received === opts.size) return;
          yield* request();
          if (received === opts.size) return;
          throw new Transient(`body ended at byte ${received} of ${opts.size}`);
        } catch (err) {
          if (!(err instanceof Transient)) throw err;
          failures++;
          if (failures > maxFailures) {
            throw new AgentError(
              "unavailable",
              "IMAGE_DOWNLOAD_FAILED",
              `GET ${opts.url}: ${err.message} (gave up after ${failures} tries)`,
              {
                details: { url: opts.url, received },
              },
            );
          }
          resumes++;
          log.warn("image download interrupted; resuming", {
            offset: received,
            error: err.message,
            attempt: failures,
          });
          await clock.sleep(retryDelayMs * Math.min(failures, 10));
        }
      }
    } finally {
      abort?.abort();
    }
  }

  let fh: FileHandle;
  try {
    fh = await open(opts.target, "r+");
  } catch (err) {
    throw new AgentError(
      "device",
      "TARGET_OPEN_FAILED",
      `cannot open ${opts.target}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  let lastReport = 0;
  const progress = (): void => {
    opts.onProgress?.({ received, written, total: opts.size });
  };
  const sink = new Writable({
    highWaterMark: 4 << 20,
    write(chunk: Buffer, _enc, cb) {
      if (capacity !== null && written + chunk.length > capacity) {
        cb(
          new AgentError(
            "device",
            "IMAGE_TOO_LARGE",
            `image does not fit: more than ${capacity} bytes decompressed`,
            {
              details: { capacity },
            },
          ),
        );
        return;
      }
      fh.write(chunk, 0, chunk.length, written).then(
        () => {
          written += chunk.length;
          if (written - lastReport >= 8 << 20) {
            lastReport = written;
            progress();
          }
          cb();
        },
        (err: Error) =>
          cb(
            new AgentError(
              "device",
              "TARGET_WRITE_FAILED",
              `write to ${opts.target} at ${written}: ${err.message}`,
              { cause: err },
            ),
          ),
      );
    },
  });
  try {
    try {
      await pipeline(Readable.from(compressed()), createGunzip({ chunkSize: 1 << 20 }), sink);
    } catch (err) {
      if (isAgentError(err)) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? "";
      if (code.startsWith("Z_") || code === "ERR_STREAM_PREMATURE_CLOSE") {
        throw new AgentError(
          "integrity",
          "IMAGE_CORRUPT",
          `image is not valid gzip: ${(err as Error).message}`,
          {
            details: { received, written },
          },
        );
      }
      throw err;
    }
    if (received !== opts.size) throw sizeMismatch(received, "received");
    const sha256 = hash.digest("hex");
    if (sha256 !== opts.sha256) {
      throw new AgentError(
        "integrity",
        "IMAGE_CHECKSUM_MISMATCH",
        `image sha256 is ${sha256}, expected ${opts.sha256}`,
        {
          details: { expected: opts.sha256, actual: sha256, url: opts.url },
        },
      );
    }
    await fh.sync();
    progress();
    return {
      compressedBytes: received,
      writtenBytes: written,
      sha256,
      resumes,
      rangeIgnored,
      durationMs: clock.now() - started,
    };
  } finally {
    await fh.close();
  }
}
