// A real HTTP server on 127.0.0.1:0 that serves one file with Range support, and can misbehave
// on purpose: cut the connection after some bytes, or ignore Range headers.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface ImageServerOptions {
  /** For the n-th request (0-based), destroy the socket after this many body bytes. */
  cutAfter?: (number | null)[];
  /** Drop the connection after the last byte instead of ending the response cleanly. */
  dropAtEnd?: boolean;
  /** For the n-th request, stop sending after this many body bytes but keep the connection open. */
  stallAfter?: (number | null)[];
  /** Answer 200 with the whole file even to range requests. */
  ignoreRange?: boolean;
  /** Body chunk size; small chunks make cuts land mid-stream. */
  chunk?: number;
  /** Answer every request with this status and no body. */
  status?: number;
}

export interface ImageServer {
  url: string;
  requests: { range: string | null; status: number }[];
  close(): Promise<void>;
}

export async function serveImage(data: Buffer, opts: ImageServerOptions = {}): Promise<ImageServer> {
  const requests: ImageServer["requests"] = [];
  const chunk = opts.chunk ?? 64 * 1024;
  const server: Server = createServer((req: IncomingMessage, res) => {
    const n = requests.length;
    const range = req.headers.range ?? null;
    if (opts.status !== undefined) {
      requests.push({ range, status: opts.status });
      res.writeHead(opts.status).end();
      return;
    }
    let start = 0;
    let status = 200;
    const m = range === null || opts.ignoreRange ? null : /^bytes=(\d+)-$/.exec(range);
    if (m) {
      start = Number(m[1]);
      if (start >= data.length) {
        requests.push({ range, status: 416 });
        res.writeHead(416, { "content-range": `bytes */${data.length}` }).end();
        return;
      }
      status = 206;
    }
    requests.push({ range, status });
    const body = data.subarray(start);
    res.writeHead(status, {
      "content-type": "application/octet-stream",
      "content-length": String(body.length),
      "accept-ranges": "bytes",
      ...(status === 206 ? { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    const cut = opts.cutAfter?.[n] ?? null;
    const stall = opts.stallAfter?.[n] ?? null;
    let sent = 0;
    const pump = (): void => {
      while (sent < body.length) {
        if (cut !== null && sent >= cut) {
          res.socket?.destroy();
          return;
        }
        if (stall !== null && sent >= stall) return; // silence; the socket stays open
        const end = Math.min(body.length, sent + chunk, cut ?? Infinity, stall ?? Infinity);
        const ok = res.write(body.subarray(sent, end));
        sent = end;
        if (!ok) {
          res.once("drain", pump);
          return;
        }
      }
      if (opts.dropAtEnd) {
        // Let the bytes leave, then cut before the response is complete on the wire.
        res.socket?.end();
        return;
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/images/host.ext4.gz`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
