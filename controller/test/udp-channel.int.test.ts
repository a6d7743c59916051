// The native UDP channel that carries TFTP transfers, against node:dgram peers on loopback:
// datagrams both ways, the connected socket's filtering, errors, argument checks, and that
// opening and closing thousands of channels leaks no descriptor and survives collection.
import { execFile } from "node:child_process";
import { createSocket } from "node:dgram";
import type { RemoteInfo, Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import {
  NATIVE_MODULE_PATH,
  nativeBinding,
  nativeChannelStatus,
  openTransferSocket,
} from "../src/netboot/tftp/udp-channel.js";
import type { TransferSocket } from "../src/netboot/tftp/udp-channel.js";

const HOST = "127.0.0.1";
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

async function peer(): Promise<{ socket: Socket; port: number; received: [Buffer, RemoteInfo][] }> {
  const socket = createSocket("udp4");
  const received: [Buffer, RemoteInfo][] = [];
  socket.on("message", (msg, rinfo) => received.push([msg, rinfo]));
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  cleanups.push(() => {
    try {
      socket.close();
    } catch {
      // a test closed it already
    }
  });
  return { socket, port: socket.address().port, received };
}

async function openNative(
  port: number,
): Promise<{ socket: TransferSocket; messages: Buffer[]; errors: Error[] }> {
  const { socket, path } = await openTransferSocket("native", HOST, HOST, port);
  expect(path).toBe("native");
  cleanups.push(() => socket.close());
  const messages: Buffer[] = [];
  const errors: Error[] = [];
  // The channel reuses its buffer: keep copies.
  socket.on("message", (msg) => messages.push(Buffer.from(msg)));
  socket.on("error", (err) => errors.push(err));
  return { socket, messages, errors };
}

const until = async (check: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
};

const localPort = (socket: TransferSocket) => (socket as unknown as { localPort: number }).localPort;

describe("native UDP channel", () => {
  it("is built by the setup", () => {
    expect(nativeChannelStatus()).toEqual({ available: true });
  });

  it("carries datagrams both ways, queued ones in order, up to the largest UDP payload", async () => {
    const p = await peer();
    const { socket, messages } = await openNative(p.port);
    socket.send(Buffer.from("ping"));
    await until(() => p.received.length === 1);
    const [msg, rinfo] = p.received[0] as [Buffer, RemoteInfo];
    expect(msg.toString()).toBe("ping");
    expect(rinfo.port).toBe(localPort(socket));
    // Three at once: the channel reads one per wake-up and must still deliver all of them.
    for (const text of ["a", "bb", "ccc"]) p.socket.send(text, rinfo.port, HOST);
    const big = Buffer.alloc(65_507, 7);
    p.socket.send(big, rinfo.port, HOST);
    await until(() => messages.length === 4);
    expect(messages.slice(0, 3).map(String)).toEqual(["a", "bb", "ccc"]);
    expect(messages[3]?.equals(big)).toBe(true);
    // A subarray is sent as itself, not as its whole backing buffer.
    socket.send(Buffer.from("xxhelloxx").subarray(2, 7));
    await until(() => p.received.length === 2);
    expect(p.received[1]?.[0].toString()).toBe("hello");
  });

  it("speaks IPv6 as well", async () => {
    const peer6 = createSocket("udp6");
    await new Promise<void>((resolve) => peer6.bind(0, "::1", resolve));
    cleanups.push(() => peer6.close());
    const got: Buffer[] = [];
    peer6.on("message", (msg) => got.push(msg));
    const { socket, path } = await openTransferSocket("native", "::1", "::1", peer6.address().port);
    cleanups.push(() => socket.close());
    expect(path).toBe("native");
    socket.send(Buffer.from("over six"));
    await until(() => got.length === 1);
    expect(got[0]?.toString()).toBe("over six");
  });

  it("drops datagrams from any other port (its own TID, RFC 1350 section 4)", async () => {
    const p = await peer();
    const stranger = await peer();
    const { socket, messages } = await openNative(p.port);
    stranger.socket.send("intruder", localPort(socket), HOST);
    p.socket.send("client", localPort(socket), HOST);
    await until(() => messages.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(messages.map(String)).toEqual(["client"]);
  });

  it("reports a peer that has gone as ECONNREFUSED", async () => {
    const p = await peer();
    const { socket, errors } = await openNative(p.port);
    await new Promise<void>((resolve) => p.socket.close(() => resolve()));
    socket.send(Buffer.from("anyone?"));
    await until(() => errors.length > 0);
    expect(errors[0]).toMatchObject({ code: "ECONNREFUSED" });
  });

  it("is quiet once closed, and frees its port", async () => {
    const p = await peer();
    const { socket } = await openNative(p.port);
    const port = localPort(socket);
    socket.close();
    socket.close();
    expect(() => socket.send(Buffer.from("late"))).not.toThrow();
    const again = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      again.once("error", reject);
      again.bind(port, HOST, resolve);
    });
    again.close();
  });

  it("leaves host names and the dgram choice to node:dgram", async () => {
    const p = await peer();
    for (const [want, local] of [
      ["dgram", HOST],
      ["native", "localhost"],
    ] as const) {
      const { socket, path } = await openTransferSocket(want, local, HOST, p.port);
      socket.close();
      expect(path).toBe("dgram");
    }
  });

  it("releases a loaded run on the ACKs it awaits, one packet per ACK, and reports the count", async () => {
    const p = await peer();
    const { Channel } = nativeBinding() as NonNullable<ReturnType<typeof nativeBinding>>;
    const buf = Buffer.alloc(64);
    const messages: [string, number][] = [];
    const drained: number[] = [];
    const channel = new Channel(
      4,
      HOST,
      HOST,
      p.port,
      buf,
      (length, _truncated, released) => messages.push([buf.subarray(0, length).toString("hex"), released]),
      (released) => drained.push(released),
      () => {},
    );
    cleanups.push(() => channel.close());
    const port = channel.localPort();
    const ack = (block: number) => Buffer.from([0, 4, block >> 8, block & 0xff]);
    for (const text of ["first", "second", "third"])
      expect(channel.load(Buffer.from(text), 0, text.length)).toBe(true);
    channel.arm(65535); // block numbers roll over inside the run
    p.socket.send(ack(65535), port, HOST);
    await until(() => p.received.length === 1);
    p.socket.send(ack(65535), port, HOST); // a duplicate: not the awaited ACK any more
    await until(() => messages.length === 1);
    expect(messages[0]).toEqual(["0004ffff", 1]); // handed over, with the one release before it
    p.socket.send(ack(0), port, HOST);
    await until(() => p.received.length === 2);
    p.socket.send(ack(1), port, HOST);
    await until(() => drained.length === 1);
    expect(p.received.map(([m]) => m.toString())).toEqual(["first", "second", "third"]);
    expect(drained).toEqual([2]);
    p.socket.send(ack(2), port, HOST); // past the run: goes to JavaScript
    await until(() => messages.length === 2);
    expect(messages[1]).toEqual(["00040002", 0]);
    // Disarmed, nothing is released; disarm reports what was released unreported.
    channel.load(Buffer.from("fourth"), 0, 6);
    channel.load(Buffer.from("fifth"), 0, 5);
    channel.arm(3);
    p.socket.send(ack(3), port, HOST);
    await until(() => p.received.length === 4);
    expect(channel.disarm()).toBe(1);
    p.socket.send(ack(4), port, HOST);
    await until(() => messages.length === 3);
    expect(messages[2]).toEqual(["00040004", 0]);
    expect(p.received).toHaveLength(4);
  });

  it("refuses bad arguments with a TypeError or RangeError, never a crash", async () => {
    const binding = nativeBinding();
    expect(binding).toBeDefined();
    const { Channel } = binding as NonNullable<typeof binding>;
    const buf = Buffer.alloc(16);
    const fn = () => {};
    type Args = ConstructorParameters<typeof Channel>;
    const bad: unknown[][] = [
      [5, HOST, HOST, 9, buf, fn, fn, fn],
      [4, "not an address", HOST, 9, buf, fn, fn, fn],
      [4, HOST, "::1", 9, buf, fn, fn, fn],
      [4, HOST, HOST, 0, buf, fn, fn, fn],
      [4, HOST, HOST, 70000, buf, fn, fn, fn],
      [4, HOST, HOST, 9, "buffer", fn, fn, fn],
      [4, HOST, HOST, 9, buf, null, fn, fn],
      [4, HOST, HOST, 9, buf, fn, fn],
      [4, "x".repeat(100_000), HOST, 9, buf, fn, fn, fn],
    ];
    for (const args of bad)
      expect(() => new Channel(...(args as Args)), JSON.stringify(args.slice(0, 5))).toThrow(TypeError);
    const p = await peer();
    const channel = new Channel(4, HOST, HOST, p.port, buf, fn, fn, fn);
    try {
      expect(() => channel.send(Buffer.alloc(4), 2, 3)).toThrow(RangeError);
      expect(() => channel.send(Buffer.alloc(4), 5, 0)).toThrow(RangeError);
      expect(() => channel.send("text" as unknown as Buffer, 0, 4)).toThrow(RangeError);
      expect(() => channel.send.call({}, Buffer.alloc(4), 0, 4)).toThrow(TypeError);
      expect(channel.send(Buffer.alloc(4), 4, 0)).toBe(0); // an empty datagram is a datagram
      expect(() => channel.load(Buffer.alloc(4), 1, 4)).toThrow(RangeError);
      expect(() => channel.arm(65536)).toThrow(RangeError);
      expect(() => channel.arm(-1)).toThrow(RangeError);
      expect(channel.load(Buffer.alloc(200_000), 0, 200_000)).toBe(false); // larger than a run
    } finally {
      channel.close();
    }
  });

  it("leaks no descriptor over thousands of channels, and an unreferenced open one keeps working", async () => {
    // A child with --expose-gc, so that collection really runs over closed and open channels.
    const script = `
      const { Channel } = require(${JSON.stringify(NATIVE_MODULE_PATH)});
      const { readdirSync } = require("node:fs");
      const { createSocket } = require("node:dgram");
      const fds = () => readdirSync("/proc/self/fd").length;
      const buf = Buffer.alloc(64);
      const peer = createSocket("udp4");
      peer.bind(0, "${HOST}", () => {
        const peerPort = peer.address().port;
        const before = fds();
        for (let i = 0; i < 3000; i++) new Channel(4, "${HOST}", "${HOST}", peerPort, buf, () => {}, () => {}, () => {}).close();
        global.gc();
        const afterClosed = fds();
        // Opened and never referenced again: collection must not close it under the peer.
        let port;
        (() => {
          const ch = new Channel(4, "${HOST}", "${HOST}", peerPort, buf, function (n) {
            console.log(JSON.stringify({ before, afterClosed, heard: buf.subarray(0, n).toString() }));
            this.close();
            peer.close();
            setImmediate(() => global.gc());
          }, () => {}, () => {});
          port = ch.localPort();
        })();
        global.gc();
        setTimeout(() => { global.gc(); peer.send("still here", port, "${HOST}"); }, 50);
      });
    `;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--expose-gc", "-e", script], { timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const result = JSON.parse(out.trim()) as { before: number; afterClosed: number; heard: string };
    expect(result.afterClosed).toBe(result.before);
    expect(result.heard).toBe("still here");
  });
});
