// The sending side of a transfer against a scripted client: windows, duplicate ACKs,
// rollover and timeouts, without sockets.
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { decodePacket, encodePacket, Opcode } from "../src/netboot/tftp/packet.js";
import {
  BlockFeeder,
  dataReader,
  netasciiReader,
  streamReader,
  toNetascii,
} from "../src/netboot/tftp/source.js";
import { Transfer } from "../src/netboot/tftp/transfer.js";
import type { TransferResult } from "../src/netboot/tftp/transfer.js";
import type { ReleaseRun, TransferSocket } from "../src/netboot/tftp/udp-channel.js";

class FakeSocket implements TransferSocket {
  readonly sent: Buffer[] = [];
  closed = false;
  private onMessage: ((msg: Buffer) => void) | undefined;
  private onReleased: ((count: number, drained: boolean) => void) | undefined;
  send(msg: Buffer): void {
    this.sent.push(Buffer.from(msg));
  }
  on(
    event: "message" | "released" | "error",
    listener: ((msg: Buffer) => void) | ((count: number, drained: boolean) => void) | ((err: Error) => void),
  ): this {
    if (event === "message") this.onMessage = listener as (msg: Buffer) => void;
    if (event === "released") this.onReleased = listener as (count: number, drained: boolean) => void;
    return this;
  }
  close(): void {
    this.closed = true;
  }
  ack(block: number): void {
    this.deliver(encodePacket({ op: Opcode.ACK, block }));
  }
  /** What the socket does with a datagram from the client. */
  protected deliver(msg: Buffer): void {
    this.onMessage?.(msg);
  }
  protected reportReleased(count: number, drained: boolean): void {
    this.onReleased?.(count, drained);
  }
  /** Block numbers of the DATA packets sent, then forget them. */
  drainBlocks(): number[] {
    const blocks = this.sent.map((p) => {
      const d = decodePacket(p);
      return d.op === Opcode.DATA ? d.block : -d.op;
    });
    this.sent.length = 0;
    return blocks;
  }
}

/** A socket with a run, releasing as controller/native/udp_channel.c does. */
class RunSocket extends FakeSocket implements ReleaseRun {
  readonly run = this;
  private packets: Buffer[] = [];
  private nextRelease = 0;
  private awaited = -1;
  private released = 0;
  loads = 0;
  constructor(private readonly capacity: number) {
    super();
  }
  load(packet: Buffer): boolean {
    if (this.packets.length >= this.capacity) return false;
    this.packets.push(Buffer.from(packet));
    this.loads++;
    return true;
  }
  arm(ackBlock: number): void {
    if (this.nextRelease < this.packets.length) this.awaited = ackBlock;
  }
  disarm(): number {
    this.empty();
    const released = this.released;
    this.released = 0;
    return released;
  }
  private empty(): void {
    this.packets = [];
    this.nextRelease = 0;
    this.awaited = -1;
  }
  protected override deliver(msg: Buffer): void {
    if (msg.length === 4 && msg.readUInt16BE(0) === Opcode.ACK && msg.readUInt16BE(2) === this.awaited) {
      this.send(this.packets[this.nextRelease++] as Buffer);
      this.released++;
      this.awaited = (this.awaited + 1) & 0xffff;
      if (this.nextRelease === this.packets.length) {
        this.empty();
        const released = this.released;
        this.released = 0;
        this.reportReleased(released, true);
      }
      return;
    }
    const released = this.released;
    this.released = 0;
    if (released > 0) this.reportReleased(released, false);
    super.deliver(msg);
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5));

function start(
  content: Buffer,
  opts: {
    blksize?: number;
    windowsize?: number;
    oack?: boolean;
    timeoutMs?: number;
    maxRetries?: number;
    socket?: FakeSocket;
  } = {},
) {
  const socket = opts.socket ?? new FakeSocket();
  const blksize = opts.blksize ?? 4;
  let result: TransferResult | undefined;
  const transfer = new Transfer(
    {
      socket,
      feeder: new BlockFeeder(dataReader(content), 1 << 20),
      blksize,
      windowsize: opts.windowsize ?? 1,
      oack: opts.oack ? [["blksize", String(blksize)]] : [],
      timeoutMs: opts.timeoutMs ?? 10_000,
      maxRetries: opts.maxRetries ?? 3,
    },
    (r) => (result = r),
  );
  transfer.start();
  return { socket, transfer, result: () => result };
}

describe("tftp transfer", () => {
  it("sends lock-step blocks and ends on the ACK of the short last block", async () => {
    const t = start(Buffer.from("abcdefghij"));
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1]);
    t.socket.ack(1);
    await tick();
    t.socket.ack(2);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([2, 3]);
    expect(t.result()).toBeUndefined();
    t.socket.ack(3);
    expect(t.result()).toMatchObject({ ok: true, bytes: 10, blocks: 3 });
    await tick();
    expect(t.socket.closed).toBe(true);
  });

  it("sends an empty last block when the size is a multiple of blksize", async () => {
    const t = start(Buffer.from("abcd"));
    await tick();
    t.socket.ack(1);
    await tick();
    const last = decodePacket(t.socket.sent.at(-1) as Buffer);
    expect(last).toMatchObject({ op: Opcode.DATA, block: 2 });
    expect(last.op === Opcode.DATA && last.data.length).toBe(0);
    t.socket.ack(2);
    expect(t.result()).toMatchObject({ ok: true, bytes: 4 });
  });

  it("waits for ACK 0 after an OACK", async () => {
    const t = start(Buffer.from("ab"), { oack: true });
    await tick();
    expect(decodePacket(t.socket.sent[0] as Buffer).op).toBe(Opcode.OACK);
    t.socket.sent.length = 0;
    t.socket.ack(5); // not ACK 0: ignored
    await tick();
    expect(t.socket.sent).toHaveLength(0);
    t.socket.ack(0);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1]);
  });

  it("does not answer a duplicate ACK (no Sorcerer's Apprentice)", async () => {
    const t = start(Buffer.alloc(40));
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1]);
    t.socket.ack(1);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([2]);
    t.socket.ack(1);
    t.socket.ack(1);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([]);
  });

  it("ignores an ACK for a block never sent", async () => {
    const t = start(Buffer.alloc(40));
    await tick();
    t.socket.ack(9);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1]);
  });

  it("ignores an ACK for the block it built ahead but has not sent", async () => {
    const t = start(Buffer.alloc(40));
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1]);
    t.socket.ack(1); // sends 2, then builds 3 ahead of the next ACK
    await tick();
    expect(t.socket.drainBlocks()).toEqual([2]);
    t.socket.ack(3);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([]);
    t.socket.ack(2);
    expect(t.socket.drainBlocks()).toEqual([3]); // sent at once: it was ready
  });

  it("on a run, lets ACKs release the loaded blocks and accounts for them in batches", async () => {
    const socket = new RunSocket(3);
    const t = start(Buffer.alloc(40, 1), { socket });
    await tick();
    expect(socket.drainBlocks()).toEqual([1]);
    expect(socket.loads).toBe(3); // blocks 2, 3, 4, released by the ACKs of 1, 2, 3
    for (let block = 1; block <= 10; block++) socket.ack(block);
    // Every block went out on its ACK: the released ones by the run, the rest by the transfer.
    expect(socket.drainBlocks()).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(socket.loads).toBe(10);
    expect(t.result()).toBeUndefined();
    socket.ack(11); // the empty last block
    expect(t.result()).toMatchObject({ ok: true, bytes: 40, blocks: 11, retransmits: 0 });
  });

  it("on a run, does not answer a duplicate ACK", async () => {
    const socket = new RunSocket(8);
    start(Buffer.alloc(40), { socket });
    await tick();
    socket.ack(1);
    expect(socket.drainBlocks()).toEqual([1, 2]);
    socket.ack(1);
    socket.ack(1);
    expect(socket.drainBlocks()).toEqual([]);
    socket.ack(2);
    expect(socket.drainBlocks()).toEqual([3]);
  });

  it("on a run, counts unreported releases as progress, and resends the block in flight on timeout", async () => {
    const socket = new RunSocket(3);
    const t = start(Buffer.alloc(40), { socket, timeoutMs: 100 });
    await tick();
    socket.ack(1); // releases 2; not reported until the run drains
    expect(socket.drainBlocks()).toEqual([1, 2]);
    await new Promise((r) => setTimeout(r, 150)); // one timeout: the release is progress
    expect(socket.drainBlocks()).toEqual([]);
    await new Promise((r) => setTimeout(r, 100)); // no ACK since: resend 2
    expect(socket.drainBlocks()).toEqual([2]);
    socket.ack(2); // the run was loaded again and armed for it
    expect(socket.drainBlocks()).toEqual([3]);
    expect(t.result()).toBeUndefined();
  });

  it("sends a window, then resumes after an ACK that falls inside it", async () => {
    const t = start(Buffer.alloc(100), { windowsize: 4 });
    await tick();
    expect(t.socket.drainBlocks()).toEqual([1, 2, 3, 4]);
    t.socket.ack(4);
    await tick();
    expect(t.socket.drainBlocks()).toEqual([5, 6, 7, 8]);
    t.socket.ack(6); // the client lost 7
    await tick();
    expect(t.socket.drainBlocks()).toEqual([7, 8, 9, 10]);
    t.socket.ack(6); // a duplicate of that ACK changes nothing
    await tick();
    expect(t.socket.drainBlocks()).toEqual([]);
  });

  it("resends the outstanding window on timeout and gives up after maxRetries", async () => {
    const t = start(Buffer.alloc(100), { windowsize: 3, timeoutMs: 30, maxRetries: 2 });
    for (let i = 0; i < 200 && t.result() === undefined; i++) await tick();
    expect(t.result()).toMatchObject({ ok: false, reason: "timed out", retransmits: 6 });
    // The window three times (first send and two retries), then an ERROR to the client.
    expect(t.socket.drainBlocks()).toEqual([1, 2, 3, 1, 2, 3, 1, 2, 3, -Opcode.ERROR]);
  });

  it("rolls block numbers over from 65535 to 0", async () => {
    const blocks = 65_540;
    const t = start(Buffer.alloc(blocks * 8 + 3), { blksize: 8, windowsize: 16 });
    await tick();
    let next = 1;
    let wire: number[] = [];
    while (t.result() === undefined) {
      const sent = t.socket.drainBlocks();
      if (sent.length === 0) {
        await tick();
        continue;
      }
      for (const b of sent) wire.push(b);
      next += sent.length;
      t.socket.ack(sent.at(-1) as number);
    }
    expect(next - 1).toBe(blocks + 1);
    expect(t.result()).toMatchObject({ ok: true, bytes: blocks * 8 + 3, blocks: blocks + 1 });
    wire = wire.slice(65_533, 65_539);
    expect(wire).toEqual([65_534, 65_535, 0, 1, 2, 3]);
  });

  it("never rewrites a packet once handed to the socket (a send may still be queued)", async () => {
    // Packets share slabs; keep the very buffers sent, as a queued send would, and check
    // every one after the whole file has gone out. 300 blocks of 516 bytes span several slabs.
    const content = Buffer.from(Array.from({ length: 300 * 512 + 7 }, (_, i) => (i * 7 + (i >> 9)) & 0xff));
    const t = start(content, { blksize: 512, windowsize: 8 });
    const kept: Buffer[] = [];
    const send = t.socket.send.bind(t.socket);
    t.socket.send = (msg: Buffer) => {
      kept.push(msg);
      send(msg);
    };
    await tick();
    while (t.result() === undefined) {
      const sent = t.socket.drainBlocks();
      if (sent.length === 0) await tick();
      else t.socket.ack(sent.at(-1) as number);
    }
    expect(t.result()).toMatchObject({ ok: true, bytes: content.length });
    // The feeder reads asynchronously, so block 1 is sent after the hook is in place too.
    const data = kept.map((p) => decodePacket(p));
    expect(data.map((d) => (d.op === Opcode.DATA ? d.block : -1))).toEqual(
      Array.from({ length: 301 }, (_, i) => i + 1),
    );
    const body = Buffer.concat(data.map((d) => (d.op === Opcode.DATA ? d.data : new Uint8Array())));
    expect(body.equals(content)).toBe(true);
  });

  it("ends with an error when the client sends ERROR", async () => {
    const t = start(Buffer.alloc(40));
    await tick();
    t.socket.ack(1);
    const onMessage = (t.socket as unknown as { onMessage: (m: Buffer) => void }).onMessage;
    onMessage(encodePacket({ op: Opcode.ERROR, code: 0, message: "user cancelled" }));
    expect(t.result()).toMatchObject({ ok: false });
    expect(t.result()?.reason).toContain("user cancelled");
  });
});

describe("tftp sources", () => {
  it("converts to netascii: LF to CR LF, CR to CR NUL", () => {
    expect(toNetascii(Buffer.from("a\nb\rc"))).toEqual(Buffer.from("a\r\nb\r\0c"));
    const plain = Buffer.from("plain");
    expect(toNetascii(plain)).toBe(plain);
  });

  it("cuts a stream of odd-sized chunks into exact blocks", async () => {
    const stream = Readable.from([Buffer.from("ab"), Buffer.from("cdefg"), "hij"]);
    const feeder = new BlockFeeder(netasciiReader(streamReader(stream)), 1024);
    await new Promise<void>((resolve) => {
      const poll = () => (feeder.ready(1 << 30) ? resolve() : feeder.wait(poll));
      poll();
    });
    const out = Buffer.alloc(4);
    const taken: string[] = [];
    for (;;) {
      const n = feeder.take(out, 0, 4);
      taken.push(out.subarray(0, n).toString());
      if (n < 4) break;
    }
    expect(taken).toEqual(["abcd", "efgh", "ij"]);
    feeder.close();
  });
});
