// The TFTP server against real clients (atftp, curl) on loopback, through a lossy proxy,
// and under a stream of random and mutated datagrams.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import type { RemoteInfo, Socket } from "node:dgram";
import { openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TftpServer } from "../src/netboot/tftp/index.js";
import type { TftpLogger, TftpTransferEvent } from "../src/netboot/tftp/index.js";
import { decodePacket, encodePacket, ErrorCode, Opcode } from "../src/netboot/tftp/packet.js";
import type { TftpPacket } from "../src/netboot/tftp/packet.js";
import { rng } from "./fuzz-mutate.js";

const HOST = "127.0.0.1";
const MiB = 1024 * 1024;

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const sha256 = (buf: Buffer) => createHash("sha256").update(buf).digest("hex");

function atftpGet(port: number, remote: string, local: string, options: string[], extra: string[] = []) {
  const opts = options.flatMap((o) => ["--option", o]);
  return run("atftp", ["--get", "-r", remote, "-l", local, ...opts, ...extra, HOST, String(port)]);
}

function curlGet(port: number, remote: string, local: string, blksize?: number, extra: string[] = []) {
  const args = ["-sS", "--max-time", "120", `tftp://${HOST}:${port}/${remote}`, "-o", local, ...extra];
  if (blksize !== undefined) args.push("--tftp-blksize", String(blksize));
  return run("curl", args);
}

/** Send one raw datagram to the server and return the first packet answered, if any. */
async function rawExchange(port: number, wire: Buffer, waitMs = 1500): Promise<TftpPacket | undefined> {
  const socket = createSocket("udp4");
  try {
    return await new Promise<TftpPacket | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs);
      socket.on("message", (msg) => {
        clearTimeout(timer);
        resolve(decodePacket(msg));
      });
      socket.bind(0, HOST, () => socket.send(wire, port, HOST));
    });
  } finally {
    socket.close();
  }
}

const rrq = (filename: string, mode = "octet") =>
  encodePacket({ op: Opcode.RRQ, filename, mode, options: [] });

/** A logger that keeps pino's JSON lines, to check what was logged. */
function capturingLogger(): { log: TftpLogger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n"))
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "debug" }, sink), lines };
}

// Both data paths: the native UDP channel (the default) and node:dgram (its fallback).
describe.each(["native", "dgram"] as const)("tftp server with real clients, %s data path", (dataPath) => {
  let dir: string;
  let root: string;
  let out: string;
  let server: TftpServer;
  let port: number;
  const sums = new Map<string, string>();
  const completed: TftpTransferEvent[] = [];
  const logged = capturingLogger();

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "weft-tftp-int-"));
    root = path.join(dir, "root");
    out = path.join(dir, "out");
    await mkdir(path.join(root, "boot"), { recursive: true });
    await mkdir(out);
    const files: [string, Buffer][] = [
      ["empty", Buffer.alloc(0)],
      ["exact512", randomBytes(512)],
      ["boot/ipxe.efi", randomBytes(1_000_003)],
      ["big", randomBytes(33 * MiB)], // > 65535 blocks at blksize 512: block numbers roll over
      ["loss", randomBytes(300_000)],
    ];
    for (const [name, data] of files) {
      await writeFile(path.join(root, name), data);
      sums.set(name, sha256(data));
    }
    await writeFile(path.join(dir, "secret"), "outside the root");
    await symlink(path.join(dir, "secret"), path.join(root, "escape"));
    server = new TftpServer({
      root,
      host: HOST,
      port: 0,
      log: logged.log,
      timeoutMs: 100,
      maxRetries: 20,
      dataPath,
      resolve: (name) => {
        if (name === "generated/hello.ipxe") return { size: 13, data: Buffer.from("#!ipxe\nshell\n") };
        if (name === "generated/explode") throw new Error("resolver bug");
        if (name === "generated/fd.bin") {
          return { size: 1_000_003, fd: openSync(path.join(root, "boot", "ipxe.efi"), "r") };
        }
        if (name === "generated/stream.bin") {
          return { size: 70_000, stream: Readable.from([Buffer.alloc(30_000, 1), Buffer.alloc(40_000, 2)]) };
        }
        return undefined;
      },
    });
    server.on("transfer-complete", (e) => completed.push(e));
    ({ port } = await server.listen());
  });

  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const fetches: [client: "atftp" | "curl", file: string, blksize: number, windowsize: number][] = [
    ["atftp", "empty", 512, 1],
    ["atftp", "exact512", 512, 1],
    ["atftp", "boot/ipxe.efi", 1468, 1],
    ["atftp", "big", 512, 1],
    ["atftp", "big", 1468, 16],
    ["atftp", "exact512", 512, 16],
    ["curl", "empty", 512, 1],
    ["curl", "exact512", 512, 1],
    ["curl", "boot/ipxe.efi", 1468, 1],
    ["curl", "big", 512, 1],
    ["curl", "big", 1468, 1],
  ];

  it.each(fetches)(
    "%s fetches %s at blksize %i, windowsize %i",
    async (client, file, blksize, windowsize) => {
      const local = path.join(out, `${client}-${file.replace("/", "_")}-${blksize}-${windowsize}`);
      const res =
        client === "atftp"
          ? await atftpGet(port, file, local, [
              ...(blksize !== 512 ? [`blksize ${blksize}`] : []),
              ...(windowsize !== 1 ? [`windowsize ${windowsize}`] : []),
            ])
          : await curlGet(port, file, local, blksize);
      expect(res.code, res.stderr).toBe(0);
      expect(sha256(await readFile(local))).toBe(sums.get(file));
    },
  );

  it("reports each completed transfer with bytes and duration", async () => {
    const local = path.join(out, "event-check");
    const before = completed.length;
    expect((await atftpGet(port, "boot/ipxe.efi", local, ["blksize 1468"])).code).toBe(0);
    const event = completed.slice(before).find((e) => e.file === "boot/ipxe.efi");
    expect(event).toMatchObject({ bytes: 1_000_003, blksize: 1468, source: "root", remoteAddress: HOST });
    // The native channel is built by the setup: a silent fallback to node:dgram fails here.
    expect(event?.dataPath).toBe(dataPath);
    expect(event?.durationMs).toBeGreaterThan(0);
  });

  it("serves content from the resolver hook", async () => {
    const a = path.join(out, "hello.ipxe");
    expect((await curlGet(port, "generated/hello.ipxe", a)).code).toBe(0);
    expect(await readFile(a, "utf8")).toBe("#!ipxe\nshell\n");
    const b = path.join(out, "stream.bin");
    expect((await atftpGet(port, "generated/stream.bin", b, ["blksize 1468", "tsize 0"])).code).toBe(0);
    const got = await readFile(b);
    expect(got.length).toBe(70_000);
    expect(got[29_999]).toBe(1);
    expect(got[30_000]).toBe(2);
  });

  it("serves a descriptor from the resolver hook, and survives a resolver that throws", async () => {
    const local = path.join(out, "fd.bin");
    expect((await atftpGet(port, "generated/fd.bin", local, ["blksize 1468", "windowsize 16"])).code).toBe(0);
    expect(sha256(await readFile(local))).toBe(sums.get("boot/ipxe.efi"));
    expect(await rawExchange(port, rrq("generated/explode"))).toEqual({
      op: Opcode.ERROR,
      code: ErrorCode.NOT_DEFINED,
      message: "internal error",
    });
  });

  it("answers a missing file with error 1 and keeps serving", async () => {
    expect(await rawExchange(port, rrq("nope"))).toEqual({
      op: Opcode.ERROR,
      code: ErrorCode.FILE_NOT_FOUND,
      message: "file not found",
    });
    const res = await curlGet(port, "nope", path.join(out, "nope"));
    expect(res.code).toBe(68); // curl: "TFTP: File not found"
    const local = path.join(out, "after-missing");
    expect((await curlGet(port, "exact512", local)).code).toBe(0);
    expect(sha256(await readFile(local))).toBe(sums.get("exact512"));
  });

  const refused: [string, Buffer, number][] = [
    ["../etc/passwd", rrq("../etc/passwd"), ErrorCode.ACCESS_VIOLATION],
    ["boot/../../secret", rrq("boot/../../secret"), ErrorCode.ACCESS_VIOLATION],
    ["a symlink out of the root", rrq("escape"), ErrorCode.ACCESS_VIOLATION],
    // A leading "/" is relative to the root: ROOT/etc/passwd does not exist.
    ["/etc/passwd", rrq("/etc/passwd"), ErrorCode.FILE_NOT_FOUND],
    ["a directory", rrq("boot"), ErrorCode.FILE_NOT_FOUND],
    // The NUL ends the name early; what follows is read as the mode and refused.
    [
      "a NUL byte in the name",
      Buffer.from("\0\u0001big\0/../secret\0octet\0", "latin1"),
      ErrorCode.ILLEGAL_OPERATION,
    ],
    ["mail mode", rrq("exact512", "mail"), ErrorCode.ILLEGAL_OPERATION],
    [
      "a write request",
      encodePacket({ op: Opcode.WRQ, filename: "new", mode: "octet", options: [] }),
      ErrorCode.ACCESS_VIOLATION,
    ],
    ["a truncated request", Buffer.from("\0\u0001exact512", "latin1"), ErrorCode.ILLEGAL_OPERATION],
  ];

  it.each(refused)("refuses %s with an ERROR packet", async (_name, wire, code) => {
    const answer = await rawExchange(port, wire);
    expect(answer).toMatchObject({ op: Opcode.ERROR, code });
  });

  it("refuses traversal from real clients", async () => {
    const viaCurl = await curlGet(port, "../etc/passwd", path.join(out, "passwd1"), undefined, [
      "--path-as-is",
    ]);
    expect(viaCurl.code).toBe(69); // curl: "TFTP: Access violation"
    const viaAtftp = await atftpGet(port, "../etc/passwd", path.join(out, "passwd2"), []);
    expect(viaAtftp.code).not.toBe(0);
    expect(viaAtftp.stderr).toContain("access violation");
    const put = await run("atftp", [
      "--put",
      "-l",
      path.join(root, "exact512"),
      "-r",
      "upload",
      HOST,
      String(port),
    ]);
    expect(put.code).not.toBe(0);
  });

  it("logs one line with the reason for each refused request", async () => {
    const before = logged.lines.length;
    await rawExchange(port, rrq("../x"));
    await rawExchange(port, rrq("missing-for-log"));
    const lines = logged.lines.slice(before).filter((l) => l.msg === "tftp request refused");
    expect(lines.map((l) => [l.file, l.reason, l.errorCode])).toEqual([
      ["../x", "dot-dot", 2],
      ["missing-for-log", "file not found", 1],
    ]);
  });

  it("serves netascii with line ends converted", async () => {
    await writeFile(path.join(root, "text"), "a\nb\n");
    const answer = await rawExchange(port, rrq("text", "netascii"));
    expect(answer).toMatchObject({ op: Opcode.DATA, block: 1 });
    expect(answer?.op === Opcode.DATA && Buffer.from(answer.data).toString()).toBe("a\r\nb\r\n");
  });

  it("completes through a proxy that drops and duplicates packets", async () => {
    const proxy = await lossyProxy(port, { seed: 7, drop: 0.05, duplicate: 0.03 });
    try {
      for (const options of [[], ["blksize 1468", "windowsize 16"]]) {
        const local = path.join(out, `loss-${options.length}`);
        const res = await atftpGet(proxy.port, "loss", local, options, ["--tftp-timeout", "1"]);
        expect(res.code, res.stderr).toBe(0);
        expect(sha256(await readFile(local))).toBe(sums.get("loss"));
      }
      expect(proxy.dropped()).toBeGreaterThan(0);
    } finally {
      proxy.close();
    }
  });

  it("survives thousands of random and mutated datagrams and still serves", async () => {
    const rand = prng(0xf00d);
    const seeds = [
      rrq("exact512"),
      rrq("big"),
      encodePacket({
        op: Opcode.RRQ,
        filename: "boot/ipxe.efi",
        mode: "octet",
        options: [["blksize", "1468"]],
      }),
      encodePacket({ op: Opcode.WRQ, filename: "x", mode: "octet", options: [] }),
      encodePacket({ op: Opcode.ACK, block: 1 }),
      encodePacket({ op: Opcode.ERROR, code: 0, message: "x" }),
      encodePacket({ op: Opcode.OACK, options: [["blksize", "8"]] }),
    ];
    const senders: Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = createSocket("udp4");
      s.on("message", () => {}); // answers and DATA are dropped unread: transfers time out
      await new Promise<void>((r) => s.bind(0, HOST, r));
      senders.push(s);
    }
    try {
      for (let i = 0; i < 4000; i++) {
        let wire: Buffer;
        if (i % 3 === 0) {
          wire = randomBytes(Math.floor(rand() * 600));
        } else {
          wire = Buffer.from(seeds[i % seeds.length] as Buffer);
          for (let f = 1 + Math.floor(rand() * 3); f > 0; f--) {
            const at = Math.floor(rand() * wire.length);
            const r = rand();
            if (r < 0.5) wire[at] = Math.floor(rand() * 256);
            else if (r < 0.7) wire = wire.subarray(0, at);
            else wire = Buffer.concat([wire, randomBytes(1 + Math.floor(rand() * 20))]);
          }
        }
        (senders[i % senders.length] as Socket).send(wire, port, HOST);
        if (i % 200 === 0) await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setTimeout(r, 200));
      const local = path.join(out, "after-fuzz");
      const res = await atftpGet(port, "boot/ipxe.efi", local, ["blksize 1468"]);
      expect(res.code, res.stderr).toBe(0);
      expect(sha256(await readFile(local))).toBe(sums.get("boot/ipxe.efi"));
    } finally {
      for (const s of senders) s.close();
    }
  });
});

describe("tftp transfer under garbage on its own TID", () => {
  it("ignores malformed datagrams from the client's port and completes", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "weft-tftp-tid-"));
    const content = randomBytes(200_000);
    await writeFile(path.join(dir, "f"), content);
    const server = new TftpServer({ root: dir, host: HOST, port: 0, timeoutMs: 200 });
    const { port } = await server.listen();
    const client = createSocket("udp4");
    await new Promise<void>((r) => client.bind(0, HOST, r));
    const rand = prng(42);
    const garbage = (): Buffer => {
      for (;;) {
        const g = randomBytes(Math.floor(rand() * 40));
        if (g.length >= 2) g[0] = 0;
        // An ERROR would end the transfer and an ACK would steer it: both are legitimate.
        if (g.length >= 2 && (g[1] === Opcode.ERROR || g[1] === Opcode.ACK)) continue;
        return g;
      }
    };
    try {
      const received: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("transfer stalled")), 30_000);
        let expected = 1;
        client.on("message", (msg, from) => {
          const packet = decodePacket(msg);
          if (packet.op !== Opcode.DATA) return reject(new Error(`unexpected ${JSON.stringify(packet)}`));
          if (packet.block === (expected & 0xffff)) {
            received.push(Buffer.from(packet.data));
            expected++;
          }
          for (let i = Math.floor(rand() * 4); i > 0; i--) client.send(garbage(), from.port, HOST);
          client.send(encodePacket({ op: Opcode.ACK, block: packet.block }), from.port, HOST);
          if (packet.data.length < 512) {
            clearTimeout(timer);
            resolve();
          }
        });
        client.send(rrq("f"), port, HOST);
      });
      expect(Buffer.concat(received).equals(content)).toBe(true);
    } finally {
      client.close();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("tftp server limits", () => {
  it("refuses a request beyond maxTransfers with 'server busy', then serves again", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "weft-tftp-cap-"));
    await writeFile(path.join(dir, "f"), randomBytes(10_000));
    const server = new TftpServer({
      root: dir,
      host: HOST,
      port: 0,
      maxTransfers: 1,
      timeoutMs: 50,
      maxRetries: 1,
    });
    const { port } = await server.listen();
    try {
      // The first request is answered with DATA 1 and left unacknowledged: it holds the slot.
      const holder = createSocket("udp4");
      await new Promise<void>((r) => holder.bind(0, HOST, r));
      const first = new Promise<Buffer>((r) => holder.once("message", r));
      holder.send(rrq("f"), port, HOST);
      expect(decodePacket(await first)).toMatchObject({ op: Opcode.DATA, block: 1 });
      expect(server.activeTransfers).toBe(1);
      expect(await rawExchange(port, rrq("f"))).toEqual({
        op: Opcode.ERROR,
        code: ErrorCode.NOT_DEFINED,
        message: "server busy",
      });
      holder.close();
      // The held transfer times out (50 ms, one retry) and frees the slot.
      for (let i = 0; i < 100 && server.activeTransfers > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await rawExchange(port, rrq("f"))).toMatchObject({ op: Opcode.DATA, block: 1 });
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("tftp server robustness", () => {
  it("rejects listen on a port in use, and can listen again elsewhere", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "weft-tftp-listen-"));
    const first = new TftpServer({ root: dir, host: HOST, port: 0 });
    const { port } = await first.listen();
    const second = new TftpServer({ root: dir, host: HOST, port });
    try {
      await expect(second.listen()).rejects.toMatchObject({ code: "EADDRINUSE" });
      const again = new TftpServer({ root: dir, host: HOST, port: 0 });
      await expect(again.listen()).resolves.toMatchObject({ address: HOST });
      await again.close();
    } finally {
      await first.close();
      await second.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps serving when an event listener throws", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "weft-tftp-listener-"));
    await writeFile(path.join(dir, "f"), "content");
    const server = new TftpServer({ root: dir, host: HOST, port: 0 });
    server.on("transfer-complete", () => {
      throw new Error("listener bug");
    });
    server.on("request-refused", () => {
      throw new Error("listener bug");
    });
    const { port } = await server.listen();
    try {
      expect(await rawExchange(port, rrq("missing"))).toMatchObject({ op: Opcode.ERROR, code: 1 });
      for (let i = 0; i < 2; i++) {
        const res = await curlGet(port, "f", path.join(dir, `out${i}`));
        expect(res.code, res.stderr).toBe(0);
      }
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** Seeded numbers in [0, 1). */
function prng(seed: number): () => number {
  const next = rng(seed);
  return () => next() / 0x100000000;
}

/**
 * A UDP proxy in front of the server that drops and duplicates datagrams in both directions,
 * from a seeded generator. The client sees one server port (the proxy's); the proxy follows
 * the server's transfer TID behind it.
 */
async function lossyProxy(
  serverPort: number,
  opts: { seed: number; drop: number; duplicate: number },
): Promise<{ port: number; dropped: () => number; close: () => void }> {
  const rand = prng(opts.seed);
  let dropped = 0;
  const front = createSocket("udp4");
  const sockets: Socket[] = [front];
  const upstreams = new Map<string, { socket: Socket; serverTid: number | undefined }>();
  const forward = (socket: Socket, msg: Buffer, port: number) => {
    if (rand() < opts.drop) {
      dropped++;
      return;
    }
    socket.send(msg, port, HOST);
    if (rand() < opts.duplicate) socket.send(msg, port, HOST);
  };
  front.on("message", (msg: Buffer, client: RemoteInfo) => {
    const key = String(client.port);
    let up = upstreams.get(key);
    if (!up) {
      const socket = createSocket("udp4");
      sockets.push(socket);
      const entry = { socket, serverTid: undefined as number | undefined };
      socket.on("message", (reply: Buffer, from: RemoteInfo) => {
        if (from.port !== serverPort) entry.serverTid = from.port;
        forward(front, reply, client.port);
      });
      socket.bind(0, HOST);
      upstreams.set(key, entry);
      up = entry;
    }
    forward(up.socket, msg, up.serverTid ?? serverPort);
  });
  await new Promise<void>((r) => front.bind(0, HOST, r));
  return {
    port: front.address().port,
    dropped: () => dropped,
    close: () => {
      for (const s of sockets) s.close();
    },
  };
}
