// Where the bytes of a transfer come from: a file under the root (opened once, read with
// positional reads in large chunks, ahead of the sender), or content the caller provides
// through the resolver hook. A transfer only ever reads forward: the packets of the current
// window are kept for retransmission, so no source needs to seek back.

import { close, read } from "node:fs";
import type { Readable } from "node:stream";

/**
 * Content the caller serves in place of a file under the root (see TftpServerOptions.resolve).
 * The server owns what it is given: it closes `fd` and destroys `stream` when the transfer ends.
 * `size` is announced to clients that ask for tsize; it should be exact.
 */
export type VirtualFile =
  | { readonly size: number; readonly data: Uint8Array }
  | { readonly size: number; readonly fd: number }
  | { readonly size: number; readonly stream: Readable };

/** A forward-only source of bytes. `next` resolves to null at the end. */
export interface ChunkReader {
  next(): Promise<Buffer | null>;
  close(): void;
}

const CHUNK = 256 * 1024;

/** Reads a file descriptor from offset 0 with positional reads; closes it on close(). */
export function fdReader(fd: number, chunkSize = CHUNK): ChunkReader {
  let position = 0;
  let done = false;
  let closed = false;
  return {
    next() {
      if (done) return Promise.resolve(null);
      return new Promise((resolve, reject) => {
        const buf = Buffer.allocUnsafe(chunkSize);
        read(fd, buf, 0, chunkSize, position, (err, bytesRead) => {
          if (err) return reject(err);
          position += bytesRead;
          // A regular file returns a short read only at its end.
          if (bytesRead < chunkSize) done = true;
          resolve(bytesRead === 0 ? null : buf.subarray(0, bytesRead));
        });
      });
    },
    close() {
      if (closed) return;
      closed = true;
      close(fd, () => {});
    },
  };
}

export function dataReader(data: Uint8Array): ChunkReader {
  let given = false;
  return {
    next() {
      if (given || data.length === 0) return Promise.resolve(null);
      given = true;
      return Promise.resolve(Buffer.from(data.buffer, data.byteOffset, data.length));
    },
    close() {},
  };
}

export function streamReader(stream: Readable): ChunkReader {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  return {
    async next() {
      for (;;) {
        const step = await iterator.next();
        if (step.done === true) return null;
        const chunk: unknown = step.value;
        const buf =
          typeof chunk === "string"
            ? Buffer.from(chunk)
            : chunk instanceof Uint8Array
              ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
              : undefined;
        if (buf === undefined) throw new TypeError("stream yielded something other than bytes");
        if (buf.length > 0) return buf;
      }
    },
    close() {
      stream.destroy();
    },
  };
}

export function virtualReader(file: VirtualFile): ChunkReader {
  if ("data" in file) return dataReader(file.data);
  if ("fd" in file) return fdReader(file.fd);
  return streamReader(file.stream);
}

/**
 * Netascii (RFC 764, as used by RFC 1350): a bare LF becomes CR LF, a bare CR becomes CR NUL.
 * Applied to a local file that already uses LF line ends. Stateless per byte, so chunks can be
 * converted independently.
 */
export function toNetascii(chunk: Buffer): Buffer {
  let extra = 0;
  for (const byte of chunk) if (byte === 0x0a || byte === 0x0d) extra++;
  if (extra === 0) return chunk;
  const out = Buffer.allocUnsafe(chunk.length + extra);
  let at = 0;
  for (const byte of chunk) {
    if (byte === 0x0a) {
      out[at++] = 0x0d;
      out[at++] = 0x0a;
    } else if (byte === 0x0d) {
      out[at++] = 0x0d;
      out[at++] = 0x00;
    } else {
      out[at++] = byte;
    }
  }
  return out;
}

export function netasciiReader(inner: ChunkReader): ChunkReader {
  return {
    async next() {
      const chunk = await inner.next();
      return chunk === null ? null : toNetascii(chunk);
    },
    close() {
      inner.close();
    },
  };
}

/**
 * Cuts a chunk stream into blocks. Keeps reading ahead, one read at a time, until `highWater`
 * bytes are buffered, so the sender finds its next block ready when an ACK arrives.
 */
export class BlockFeeder {
  private readonly chunks: Buffer[] = [];
  private headOffset = 0;
  private buffered = 0;
  private eof = false;
  private reading = false;
  private closed = false;
  private failure: Error | undefined;
  private waiter: (() => void) | undefined;

  constructor(
    private readonly reader: ChunkReader,
    private readonly highWater: number,
  ) {
    this.fill();
  }

  get error(): Error | undefined {
    return this.failure;
  }

  /** True when `n` bytes can be taken now (or all that remains, at the end). */
  ready(n: number): boolean {
    return this.buffered >= n || this.eof;
  }

  /** Call `fn` once, when more data has arrived, the end is reached or a read failed. */
  wait(fn: () => void): void {
    this.waiter = fn;
    this.fill();
  }

  /** Copy up to `n` bytes into `out` at `at`; returns how many were copied. */
  take(out: Buffer, at: number, n: number): number {
    let copied = 0;
    while (copied < n && this.chunks.length > 0) {
      const head = this.chunks[0] as Buffer;
      const count = Math.min(n - copied, head.length - this.headOffset);
      head.copy(out, at + copied, this.headOffset, this.headOffset + count);
      copied += count;
      this.headOffset += count;
      if (this.headOffset === head.length) {
        this.chunks.shift();
        this.headOffset = 0;
      }
    }
    this.buffered -= copied;
    this.fill();
    return copied;
  }

  /** Release the source; a read still in flight is let finish first (its fd stays valid). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.eof = true;
    this.waiter = undefined;
    this.chunks.length = 0;
    this.buffered = 0;
    if (!this.reading) this.reader.close();
  }

  private fill(): void {
    if (this.reading || this.eof || this.buffered >= this.highWater) return;
    this.reading = true;
    this.reader.next().then(
      (chunk) => {
        this.reading = false;
        if (this.closed) return this.reader.close();
        if (chunk === null) this.eof = true;
        else {
          this.chunks.push(chunk);
          this.buffered += chunk.length;
        }
        this.wake();
        this.fill();
      },
      (err: unknown) => {
        this.reading = false;
        if (this.closed) return this.reader.close();
        this.failure = err instanceof Error ? err : new Error(String(err));
        this.eof = true;
        this.wake();
      },
    );
  }

  private wake(): void {
    const fn = this.waiter;
    this.waiter = undefined;
    fn?.();
  }
}
