// The data path of a transfer: a connected UDP socket from Weft's small native module
// (controller/native/udp_channel.c), or node:dgram where that module is not built.
//
// The native channel exists for speed. In lock-step TFTP every block is one ACK in and one
// DATA out, and node:dgram's own cost per datagram is larger than the kernel's: measured on
// loopback at blksize 512, a responder that does nothing but answer each ACK with a ready
// DATA packet used 3.5 s of CPU per 64 MiB through node:dgram and 2.2 s through the channel
// (atftpd: 2.3 s). For lock-step the channel also holds a run of blocks built ahead, each
// released by the ACK before it (see ReleaseRun); every datagram from a client that does not
// release one is parsed in TypeScript.

import { createSocket } from "node:dgram";
import type { Socket } from "node:dgram";
import { createRequire } from "node:module";
import { isIPv4, isIPv6 } from "node:net";
import { fileURLToPath } from "node:url";
import { getSystemErrorName } from "node:util";

/** What a transfer needs of its socket. */
export interface TransferSocket {
  /** Send one datagram to the peer; a send that fails for want of buffer space is a loss. */
  send(msg: Buffer): void;
  /** `msg` is only valid during the call: the native channel reuses its buffer. */
  on(event: "message", listener: (msg: Buffer) => void): unknown;
  /**
   * Packets of the run (see `run`) sent since the last report; heard before the "message"
   * that follows them, and when the run is used up (`drained`).
   */
  on(event: "released", listener: (count: number, drained: boolean) => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  close(): void;
  /** Lock-step fast path of the native channel; undefined on node:dgram. */
  readonly run?: ReleaseRun;
}

/**
 * DATA packets loaded ahead in the native channel, each sent by the channel itself the
 * moment the ACK of the block before it arrives (see controller/native/udp_channel.c).
 */
export interface ReleaseRun {
  /** Copy one more packet into the run; false when it has no room left. */
  load(packet: Buffer): boolean;
  /** The ACK of `ackBlock` (16-bit, as on the wire) releases the first packet not yet sent. */
  arm(ackBlock: number): void;
  /** Empty the run; returns the packets released since the last report. */
  disarm(): number;
}

export type DataPath = "native" | "dgram";

interface NativeChannel {
  send(buffer: Buffer, offset: number, length: number): number;
  load(buffer: Buffer, offset: number, length: number): boolean;
  arm(ackBlock: number): void;
  disarm(): number;
  localPort(): number;
  close(): void;
}

export interface NativeBinding {
  Channel: new (
    family: 4 | 6,
    localAddress: string,
    remoteAddress: string,
    remotePort: number,
    recvBuffer: Buffer,
    onMessage: (length: number, truncated: boolean, released: number) => void,
    onDrained: (released: number) => void,
    onError: (errno: number) => void,
  ) => NativeChannel;
}

/** Where `npm run build` (node-gyp) leaves the module; the same from src/ and dist/. */
export const NATIVE_MODULE_PATH = fileURLToPath(
  new URL("../../../native/build/Release/weft_udp.node", import.meta.url),
);

let moduleState: { binding: NativeBinding } | { error: string } | undefined;

function load(): { binding: NativeBinding } | { error: string } {
  if (moduleState === undefined) {
    try {
      const binding = createRequire(import.meta.url)(NATIVE_MODULE_PATH) as NativeBinding;
      if (typeof binding.Channel !== "function") throw new Error("the module has no Channel");
      moduleState = { binding };
    } catch (err) {
      moduleState = { error: `${(err as Error).message.split("\n")[0]} (run npm run build)` };
    }
  }
  return moduleState;
}

/** The module itself, or undefined when it is not built: for tests of its own checks. */
export function nativeBinding(): NativeBinding | undefined {
  const state = load();
  return "binding" in state ? state.binding : undefined;
}

/** Whether the native channel can be used, and if not, why. */
export function nativeChannelStatus(): { available: true } | { available: false; reason: string } {
  const state = load();
  return "binding" in state ? { available: true } : { available: false, reason: state.error };
}

/**
 * One buffer receives for every native channel: a datagram is handed to JavaScript and
 * handled before the event loop reads the next one. 64 KiB holds any UDP datagram over IPv4
 * and any that an IPv6 peer can send without jumbograms.
 */
const RECEIVE_BUFFER = Buffer.allocUnsafeSlow(65536);

// Send failures that only lose the datagram; the transfer's retransmission covers them.
const TRANSIENT = new Set(["EAGAIN", "EWOULDBLOCK", "ENOBUFS", "ENOMEM", "EINTR"]);

class NativeSocket implements TransferSocket, ReleaseRun {
  private readonly channel: NativeChannel;
  private messageListener: ((msg: Buffer) => void) | undefined;
  private releasedListener: ((count: number, drained: boolean) => void) | undefined;
  private errorListener: ((err: Error) => void) | undefined;
  private closed = false;

  constructor(binding: NativeBinding, local: string, remote: string, remotePort: number) {
    this.channel = new binding.Channel(
      isIPv6(remote) ? 6 : 4,
      local,
      remote,
      remotePort,
      RECEIVE_BUFFER,
      (length, truncated, released) => {
        if (released > 0) this.releasedListener?.(released, false);
        // A datagram larger than any UDP payload cannot be a TFTP packet; never cut one short.
        if (!truncated) this.messageListener?.(RECEIVE_BUFFER.subarray(0, length));
      },
      (released) => this.releasedListener?.(released, true),
      (errno) => this.fail(errno, "recv"),
    );
  }

  get localPort(): number {
    return this.channel.localPort();
  }

  send(msg: Buffer): void {
    if (this.closed) return;
    const rc = this.channel.send(msg, 0, msg.length);
    if (rc < 0 && !TRANSIENT.has(getSystemErrorName(rc))) this.fail(rc, "send");
  }

  get run(): ReleaseRun {
    return this;
  }

  load(packet: Buffer): boolean {
    return !this.closed && this.channel.load(packet, 0, packet.length);
  }

  arm(ackBlock: number): void {
    if (!this.closed) this.channel.arm(ackBlock);
  }

  disarm(): number {
    return this.closed ? 0 : this.channel.disarm();
  }

  on(event: "message", listener: (msg: Buffer) => void): this;
  on(event: "released", listener: (count: number, drained: boolean) => void): this;
  on(event: "error", listener: (err: Error) => void): this;
  on(
    event: "message" | "released" | "error",
    listener: ((msg: Buffer) => void) | ((count: number, drained: boolean) => void) | ((err: Error) => void),
  ): this {
    if (event === "message") this.messageListener = listener as (msg: Buffer) => void;
    else if (event === "released")
      this.releasedListener = listener as (count: number, drained: boolean) => void;
    else this.errorListener = listener as (err: Error) => void;
    return this;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel.close();
  }

  private fail(errno: number, syscall: string): void {
    if (this.closed) return;
    const code = getSystemErrorName(errno);
    const err = Object.assign(new Error(`${syscall} ${code}`), { code, errno, syscall });
    this.errorListener?.(err);
  }
}

/**
 * A socket bound to `local` (port 0) and connected to the peer: its own TID (RFC 1350
 * section 4). The native channel when asked for and available; node:dgram otherwise, and
 * also for addresses the channel does not take (host names, IPv6 zone ids).
 */
export async function openTransferSocket(
  want: DataPath,
  local: string,
  remote: string,
  remotePort: number,
): Promise<{ socket: TransferSocket; path: DataPath }> {
  const state = load();
  const literal = (isIPv4(local) && isIPv4(remote)) || (isIPv6(local) && isIPv6(remote));
  const zoned = local.includes("%") || remote.includes("%");
  if (want === "native" && "binding" in state && literal && !zoned) {
    return { socket: new NativeSocket(state.binding, local, remote, remotePort), path: "native" };
  }
  return { socket: await dgramSocket(local, remote, remotePort), path: "dgram" };
}

async function dgramSocket(local: string, remote: string, remotePort: number): Promise<Socket> {
  const socket = createSocket({ type: isIPv6(remote) ? "udp6" : "udp4" });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ address: local, port: 0 }, () => {
        socket.connect(remotePort, remote, () => {
          socket.off("error", reject);
          resolve();
        });
      });
    });
  } catch (err) {
    socket.close();
    throw err;
  }
  return socket;
}
