// One read transfer, on its own connected UDP socket (its own TID, RFC 1350 section 4).
//
// Sending follows RFC 7440: up to `windowsize` blocks go out, then the sender waits for an
// ACK. An ACK for the last block sent moves the window on; an ACK for an earlier block of the
// window means the client missed the block after it, so sending resumes right after the
// acknowledged block. Plain RFC 1350 lock-step is the window of 1.
//
// Retransmission happens only on timeout, never on a duplicate ACK: answering duplicates is
// the Sorcerer's Apprentice bug (RFC 1123 section 4.2.3.1), so an ACK for a block already
// acknowledged is dropped.
//
// Block numbers are 16 bits on the wire and roll over from 65535 to 0, as tftpd-hpa, curl
// and atftp expect; internally blocks are counted without limit and an ACK is mapped to the
// nearest block at or after the last acknowledged one.
//
// The path from an ACK to the next DATA is the whole cost of a lock-step transfer, so it
// allocates as little as it can: DATA packets are cut from shared slabs rather than allocated
// one by one, and an ACK is read straight from the datagram without decoding it. The next
// block is built before its ACK comes. On the native channel, lock-step goes further: the
// blocks built ahead are loaded into the channel as a run, and each ACK releases the next one
// there, without JavaScript; this code hears of them in batches ("released") and keeps its
// count of acknowledged blocks from that.

import { performance } from "node:perf_hooks";
import { decodePacket, encodePacket, ErrorCode, Opcode, writeDataHeader } from "./packet.js";
import type { TftpOption } from "./packet.js";
import type { BlockFeeder } from "./source.js";
import type { ReleaseRun, TransferSocket } from "./udp-channel.js";

export interface TransferParams {
  readonly socket: TransferSocket;
  readonly feeder: BlockFeeder;
  readonly blksize: number;
  readonly windowsize: number;
  /** Options to acknowledge first; empty means DATA block 1 goes out at once. */
  readonly oack: readonly TftpOption[];
  readonly timeoutMs: number;
  readonly maxRetries: number;
}

export interface TransferResult {
  readonly ok: boolean;
  /** Why it failed; undefined when ok. */
  readonly reason: string | undefined;
  /** Data octets the client acknowledged. */
  readonly bytes: number;
  /** Blocks the client acknowledged. */
  readonly blocks: number;
  readonly retransmits: number;
  readonly durationMs: number;
}

/**
 * Bytes per slab DATA packets are cut from. One allocation serves many packets (at least
 * one); a packet's bytes are never rewritten once cut, so a send still queued in libuv
 * cannot see them change.
 */
const SLAB_BYTES = 64 * 1024;

export class Transfer {
  private base = 0; // last block the client acknowledged
  private next = 1; // next block to send
  // Packets of blocks base+1 .. base+window.length: the window, sent or not yet, and the
  // blocks past it built ahead (one, or on the native channel as many as its run holds).
  private readonly window: Buffer[] = [];
  private sentMax = 0; // highest block sent so far
  private last: number | undefined; // number of the final block, once it is built
  private awaitingOack: boolean;
  private bytes = 0;
  private retries = 0;
  private retransmits = 0;
  private lastProgress = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingForData = false;
  private finished = false;
  private readonly started = performance.now();
  private readonly oackPacket: Buffer | undefined;
  private slab: Buffer = Buffer.alloc(0);
  private slabUsed = 0;
  // Lock-step on the native channel: the run, and how many blocks after the one in flight
  // (window[1..loaded]) are loaded into it.
  private readonly run: ReleaseRun | undefined;
  private loaded = 0;

  constructor(
    private readonly p: TransferParams,
    private readonly onEnd: (result: TransferResult) => void,
  ) {
    this.awaitingOack = p.oack.length > 0;
    this.oackPacket = this.awaitingOack ? encodePacket({ op: Opcode.OACK, options: p.oack }) : undefined;
    // Not through guard(): that would allocate a closure per datagram on the hot path.
    p.socket.on("message", (msg) => {
      try {
        this.onMessage(msg);
      } catch (err) {
        this.fail(err);
      }
    });
    this.run = p.windowsize === 1 ? p.socket.run : undefined;
    if (this.run) {
      p.socket.on("released", (count, drained) => {
        try {
          this.onReleased(count, drained);
        } catch (err) {
          this.fail(err);
        }
      });
    }
    p.socket.on("error", (err) => this.finish(false, `socket error: ${err.message}`));
  }

  start(): void {
    this.lastProgress = performance.now();
    this.armTimer(this.p.timeoutMs);
    this.guard(() => {
      if (this.oackPacket) this.p.socket.send(this.oackPacket);
      else {
        this.pump();
        this.prepareAhead();
      }
    });
  }

  /** Stop now, telling the client why with an ERROR packet. */
  abort(reason: string): void {
    if (this.finished) return;
    this.sendError(ErrorCode.NOT_DEFINED, reason);
    this.finish(false, reason);
  }

  /** Run a socket or timer callback; a throw ends this transfer instead of the process. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(err);
    }
  }

  private fail(err: unknown): void {
    this.finish(false, `internal error: ${err instanceof Error ? err.message : String(err)}`);
  }

  private onMessage(msg: Buffer): void {
    if (this.finished) return;
    // Fast path for the packet that arrives once per window: a well-formed ACK.
    if (msg.length === 4 && msg[0] === 0 && msg[1] === Opcode.ACK) {
      this.onAck(((msg[2] as number) << 8) | (msg[3] as number));
      return;
    }
    let packet;
    try {
      packet = decodePacket(msg);
    } catch {
      return; // garbage on our TID: ignore it and keep going
    }
    if (packet.op === Opcode.ACK) this.onAck(packet.block);
    else if (packet.op === Opcode.ERROR) {
      this.finish(false, `client sent error ${packet.code}: ${packet.message.slice(0, 200)}`);
    }
    // Anything else on a read transfer is ignored.
  }

  private onAck(wireBlock: number): void {
    if (this.awaitingOack) {
      if (wireBlock !== 0) return;
      this.awaitingOack = false;
      this.progressed();
      this.pump();
      this.prepareAhead();
      return;
    }
    const delta = (wireBlock - this.base) & 0xffff;
    // delta 0: a duplicate of the last ACK; beyond what was sent: a block never sent. Drop both.
    if (delta === 0 || delta > this.sentMax - this.base) return;
    for (let i = 0; i < delta; i++) this.bytes += (this.window[i] as Buffer).length - 4;
    if (delta === 1) this.window.shift();
    else this.window.splice(0, delta);
    this.base += delta;
    if (this.base === this.last) {
      this.progressed();
      this.finish(true, undefined);
      return;
    }
    // Whether the ACK closed the window or sat inside it, sending resumes after it. Send
    // first: in lock-step the client idles until this DATA reaches it, and the bookkeeping
    // below can run while it works.
    this.next = this.base + 1;
    this.pump();
    this.progressed();
    this.prepareAhead();
  }

  /**
   * `count` ACKs came, each of the block in flight, and each released the next block of the
   * run: account for them as onAck would have. `drained`: the run is used up; load the next.
   */
  private onReleased(count: number, drained: boolean): void {
    if (this.finished) return;
    for (let i = 0; i < count; i++) this.bytes += (this.window[i] as Buffer).length - 4;
    this.window.splice(0, count);
    this.base += count;
    this.sentMax = this.base + 1;
    this.next = this.sentMax + 1;
    this.loaded -= count;
    if (count > 0) this.progressed();
    if (drained) {
      this.loaded = 0;
      this.prepareAhead();
    }
  }

  private progressed(): void {
    this.retries = 0;
    this.lastProgress = performance.now();
  }

  /** Send blocks next .. base+windowsize, building the ones not built before. */
  private pump(): void {
    if (this.finished || this.awaitingOack || this.waitingForData) return;
    const { socket, feeder, blksize } = this.p;
    const limit = this.base + this.p.windowsize;
    while (this.next <= limit && (this.last === undefined || this.next <= this.last)) {
      let packet = this.window[this.next - this.base - 1];
      if (packet === undefined) {
        if (!feeder.ready(blksize)) {
          this.waitingForData = true;
          feeder.wait(() => {
            this.waitingForData = false;
            this.guard(() => {
              this.pump();
              this.prepareAhead();
            });
          });
          return;
        }
        if (feeder.error) {
          this.abort("read error");
          return;
        }
        packet = this.build(this.next);
      }
      socket.send(packet);
      if (this.next > this.sentMax) this.sentMax = this.next;
      this.next++;
    }
  }

  /** Have the next block ready before the ACK that makes room for it: loaded in the run, if any. */
  private prepareAhead(): void {
    if (this.finished) return;
    if (this.run) {
      this.loadRun(this.run);
      return;
    }
    if (this.last !== undefined || this.window.length > this.p.windowsize) return;
    const { feeder, blksize } = this.p;
    if (feeder.ready(blksize) && !feeder.error) this.build(this.base + this.window.length + 1);
  }

  /**
   * Load the blocks after the one in flight into the run, building them as they are ready,
   * until it is full; arm it if it was empty. Only with exactly one block in flight: that
   * block's ACK releases the first. While blocks are loaded the run is armed, so the channel
   * takes every ACK that moves the transfer on, and only duplicates reach onAck.
   */
  private loadRun(run: ReleaseRun): void {
    if (this.sentMax !== this.base + 1 || this.next !== this.sentMax + 1) return;
    const { feeder, blksize } = this.p;
    const before = this.loaded;
    for (;;) {
      const index = 1 + this.loaded; // window index of the next block to load
      let packet = this.window[index];
      if (packet === undefined) {
        if (this.last !== undefined || !feeder.ready(blksize) || feeder.error) break;
        packet = this.build(this.base + 1 + index);
      }
      if (!run.load(packet)) break; // full: the block stays built, loaded next time
      this.loaded++;
    }
    if (before === 0 && this.loaded > 0) run.arm(this.sentMax & 0xffff);
  }

  /** Cut block `block` from the feeder, which has it ready, and append it to the window. */
  private build(block: number): Buffer {
    const { feeder, blksize } = this.p;
    let packet = this.cutPacket(4 + blksize);
    const n = feeder.take(packet, 4, blksize);
    if (n < blksize) {
      packet = packet.subarray(0, 4 + n);
      this.last = block;
    }
    writeDataHeader(packet, block & 0xffff);
    this.window.push(packet);
    return packet;
  }

  /** A fresh `size`-byte packet buffer, cut from the current slab. */
  private cutPacket(size: number): Buffer {
    if (this.slabUsed + size > this.slab.length) {
      // allocUnsafe: every byte of a packet is written (header, then data) before it is sent;
      // a short last block is cut down to what was written.
      this.slab = Buffer.allocUnsafeSlow(Math.max(size, SLAB_BYTES - (SLAB_BYTES % size)));
      this.slabUsed = 0;
    }
    const packet = this.slab.subarray(this.slabUsed, this.slabUsed + size);
    this.slabUsed += size;
    return packet;
  }

  private armTimer(ms: number): void {
    this.timer = setTimeout(() => this.guard(() => this.onTimer()), ms);
  }

  private onTimer(): void {
    if (this.finished) return;
    // Releases not reported yet are progress too: take them from the run, and load it anew.
    if (this.run && this.loaded > 0) this.onReleased(this.run.disarm(), true);
    const idle = performance.now() - this.lastProgress;
    if (idle < this.p.timeoutMs) {
      this.armTimer(this.p.timeoutMs - idle);
      return;
    }
    if (this.retries >= this.p.maxRetries) {
      this.abort("timed out");
      return;
    }
    this.retries++;
    this.lastProgress = performance.now();
    this.armTimer(this.p.timeoutMs);
    if (this.awaitingOack) {
      this.retransmits++;
      this.p.socket.send(this.oackPacket as Buffer);
      return;
    }
    // Resend the whole outstanding window (RFC 7440 section 4).
    this.retransmits += Math.max(1, this.next - this.base - 1);
    this.next = this.base + 1;
    this.pump();
  }

  private sendError(code: number, message: string): void {
    try {
      this.p.socket.send(encodePacket({ op: Opcode.ERROR, code, message }));
    } catch {
      // the socket may already be closed; nothing more to tell the client
    }
  }

  private finish(ok: boolean, reason: string | undefined): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    this.run?.disarm();
    this.p.feeder.close();
    this.window.length = 0;
    // Close after pending sends (the final ERROR, if any) have been handed to the kernel.
    setImmediate(() => {
      try {
        this.p.socket.close();
      } catch {
        // already closed
      }
    });
    this.onEnd({
      ok,
      reason,
      bytes: this.bytes,
      blocks: this.base,
      retransmits: this.retransmits,
      durationMs: performance.now() - this.started,
    });
  }
}
