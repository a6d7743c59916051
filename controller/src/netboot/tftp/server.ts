// The TFTP server: one listening socket for requests, one connected socket per transfer.
//
// Read-only: a write request is answered with ERROR 2. A request that is refused (bad
// name, missing file, unsupported mode, too many transfers, malformed packet) gets an ERROR
// packet from the listening socket and one log line with the reason; nothing a peer sends
// can throw out of a socket handler.
//
// Limitation: Node cannot tell which local address a datagram arrived on, so a transfer
// socket binds the server's own address. When the server listens on a wildcard address on
// a multi-homed host, replies leave by the kernel's route choice; bind the server to the
// address of the boot network to be exact.

import { createSocket } from "node:dgram";
import type { RemoteInfo, Socket } from "node:dgram";
import { EventEmitter } from "node:events";
import { close, constants as fsConstants, fstat, open } from "node:fs";
import { realpath } from "node:fs/promises";
import { promisify } from "node:util";
import { isIPv6 } from "node:net";
import { BLKSIZE_MAX, negotiateRead } from "./options.js";
import type { NegotiationLimits } from "./options.js";
import { decodePacket, encodePacket, ErrorCode, Opcode, TftpPacketError } from "./packet.js";
import type { RequestPacket } from "./packet.js";
import { normalizeRequestPath, resolveUnderRoot, TftpPathError } from "./paths.js";
import { BlockFeeder, fdReader, netasciiReader, virtualReader } from "./source.js";
import type { ChunkReader, VirtualFile } from "./source.js";
import { Transfer } from "./transfer.js";
import type { TransferResult } from "./transfer.js";
import { nativeChannelStatus, openTransferSocket } from "./udp-channel.js";
import type { DataPath, TransferSocket } from "./udp-channel.js";

/** The subset of a pino logger the server uses; a pino Logger satisfies it. */
export interface TftpLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): TftpLogger;
}

const silentLogger: TftpLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

export interface TftpRequestInfo {
  readonly remoteAddress: string;
  readonly remotePort: number;
}

/**
 * Serve generated content: called with the normalized relative path ("a/b.efi") of every
 * read request before the root is consulted. Return undefined to fall through to the root.
 */
export type TftpResolver = (
  path: string,
  request: TftpRequestInfo,
) => VirtualFile | undefined | Promise<VirtualFile | undefined>;

export interface TftpServerOptions {
  /** Directory served; reads never leave it. */
  readonly root: string;
  /** Address to listen on; default "0.0.0.0". */
  readonly host?: string;
  /** UDP port; default 69, 0 picks a free port (tests). */
  readonly port?: number;
  readonly log?: TftpLogger;
  readonly resolve?: TftpResolver;
  /** Concurrent transfers; requests beyond get ERROR 0 "server busy". Default 64. */
  readonly maxTransfers?: number;
  /** Retransmission timeout when the client does not ask for one (RFC 2349). Default 1000 ms. */
  readonly timeoutMs?: number;
  /** Retransmissions of one window before the transfer is abandoned. Default 5. */
  readonly maxRetries?: number;
  /** Largest blksize granted. Default 65464 (RFC 2348's maximum). */
  readonly maxBlockSize?: number;
  /** Largest windowsize granted. Default 64 blocks. */
  readonly maxWindowSize?: number;
  /**
   * How transfers send and receive: "native" (default) uses Weft's native UDP channel when
   * it is built and falls back to node:dgram when it is not; "dgram" always uses node:dgram.
   */
  readonly dataPath?: DataPath;
}

export interface TftpTransferEvent extends TftpRequestInfo {
  /** The normalized path served. */
  readonly file: string;
  readonly source: "root" | "virtual";
  readonly mode: "octet" | "netascii";
  readonly blksize: number;
  readonly windowsize: number;
  /** Data octets the client acknowledged. */
  readonly bytes: number;
  readonly blocks: number;
  readonly retransmits: number;
  readonly durationMs: number;
  /** The socket implementation the transfer ran on. */
  readonly dataPath: DataPath;
}

export interface TftpTransferFailedEvent extends TftpTransferEvent {
  readonly reason: string;
}

export interface TftpRefusedEvent extends TftpRequestInfo {
  /** The file name as sent, when the packet could be decoded. */
  readonly file: string | undefined;
  readonly reason: string;
  /** The TFTP error code sent back, or undefined when nothing was sent. */
  readonly errorCode: number | undefined;
}

export interface TftpServerEvents {
  "transfer-complete": [TftpTransferEvent];
  "transfer-failed": [TftpTransferFailedEvent];
  "request-refused": [TftpRefusedEvent];
}

class Refusal extends Error {
  constructor(
    readonly errorCode: number,
    readonly reason: string,
    readonly clientMessage: string,
  ) {
    super(reason);
  }
}

interface Opened {
  readonly reader: ChunkReader;
  readonly size: number;
  readonly source: "root" | "virtual";
}

const READ_AHEAD = 512 * 1024;
const openFd = promisify(open);
const fstatFd = promisify(fstat);

export class TftpServer extends EventEmitter<TftpServerEvents> {
  private readonly log: TftpLogger;
  private readonly host: string;
  private readonly port: number;
  private readonly maxTransfers: number;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly limits: NegotiationLimits;
  private readonly dataPath: DataPath;
  private socket: Socket | undefined;
  private realRoot: string | undefined;
  private closing = false;
  /** Requests being set up or transferring, by "address|port"; value set once running. */
  private readonly active = new Map<string, Transfer | undefined>();
  private readonly pending = new Set<Promise<void>>();
  private malformedLogged = 0;
  private malformedWindowStart = 0;
  private malformedSuppressed = 0;

  constructor(private readonly opts: TftpServerOptions) {
    super();
    this.log = opts.log ?? silentLogger;
    this.host = opts.host ?? "0.0.0.0";
    this.port = opts.port ?? 69;
    this.maxTransfers = opts.maxTransfers ?? 64;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.maxRetries = opts.maxRetries ?? 5;
    this.limits = {
      maxBlockSize: Math.min(opts.maxBlockSize ?? BLKSIZE_MAX, BLKSIZE_MAX),
      maxWindowSize: Math.min(opts.maxWindowSize ?? 64, 65535),
    };
    this.dataPath = opts.dataPath ?? "native";
  }

  /** Start listening. Resolves with the bound address once requests are accepted. */
  async listen(): Promise<{ address: string; port: number }> {
    if (this.socket) throw new Error("TFTP server already listening");
    this.realRoot = await realpath(this.opts.root);
    const socket = createSocket({ type: isIPv6(this.host) ? "udp6" : "udp4" });
    this.socket = socket;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind({ address: this.host, port: this.port, exclusive: true }, () => {
          socket.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      // EADDRINUSE, or EACCES for port 69 without the capability: leave the server re-usable.
      this.socket = undefined;
      socket.close();
      throw err;
    }
    socket.on("error", (err) => this.log.error({ err }, "tftp listening socket error"));
    socket.on("message", (msg, rinfo) => {
      try {
        this.onRequest(msg, rinfo);
      } catch (err) {
        // Nothing a peer sends may take the process down; a bug here is logged, not thrown.
        this.log.error(
          { err, remoteAddress: rinfo.address, remotePort: rinfo.port },
          "tftp request handling failed",
        );
      }
    });
    const bound = socket.address();
    const native = nativeChannelStatus();
    const dataPath = this.dataPath === "native" && native.available ? "native" : "dgram";
    this.log.info(
      { address: bound.address, port: bound.port, root: this.realRoot, dataPath },
      "tftp listening",
    );
    if (this.dataPath === "native" && !native.available) {
      this.log.warn(
        { reason: native.reason },
        "tftp native UDP channel unavailable; transfers use node:dgram",
      );
    }
    return { address: bound.address, port: bound.port };
  }

  address(): { address: string; port: number } {
    if (!this.socket) throw new Error("TFTP server is not listening");
    const a = this.socket.address();
    return { address: a.address, port: a.port };
  }

  /** Number of transfers being set up or running. */
  get activeTransfers(): number {
    return this.active.size;
  }

  /** Stop accepting requests, abort running transfers (clients get ERROR 0) and wait for them. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const socket = this.socket;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
    for (const transfer of this.active.values()) transfer?.abort("server shutting down");
    await Promise.allSettled([...this.pending]);
  }

  private onRequest(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.closing) return;
    const who: TftpRequestInfo = { remoteAddress: rinfo.address, remotePort: rinfo.port };
    let packet;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      const error = err instanceof TftpPacketError ? err : new TftpPacketError("truncated", String(err));
      this.onMalformed(msg, who, error);
      return;
    }
    if (packet.op === Opcode.WRQ) {
      this.refuse(
        who,
        packet.filename,
        new Refusal(ErrorCode.ACCESS_VIOLATION, "write request", "server is read-only"),
      );
      return;
    }
    if (packet.op !== Opcode.RRQ) {
      // DATA/ACK/ERROR/OACK belong on a transfer's TID, not here; never answer an ERROR.
      this.log.debug({ ...who, op: packet.op }, "tftp non-request packet on the listening port ignored");
      return;
    }
    const key = `${rinfo.address}|${rinfo.port}`;
    if (this.active.has(key)) {
      // A retransmitted request: the transfer already started answers it by its own timer.
      this.log.debug({ ...who, file: packet.filename }, "tftp duplicate request ignored");
      return;
    }
    if (this.active.size >= this.maxTransfers) {
      this.refuse(
        who,
        packet.filename,
        new Refusal(ErrorCode.NOT_DEFINED, "too many transfers", "server busy"),
      );
      return;
    }
    this.active.set(key, undefined);
    const run = this.startTransfer(packet, who, key).catch((err: unknown) => {
      this.active.delete(key);
      if (err instanceof Refusal) this.refuse(who, packet.filename, err);
      else {
        this.log.error({ ...who, file: packet.filename, err }, "tftp transfer setup failed");
        this.refuse(
          who,
          packet.filename,
          new Refusal(ErrorCode.NOT_DEFINED, "internal error", "internal error"),
        );
      }
    });
    this.pending.add(run);
    void run.finally(() => this.pending.delete(run));
  }

  /** Emit without letting a throwing listener unwind into a socket handler. */
  private safeEmit<K extends keyof TftpServerEvents>(event: K, ...args: TftpServerEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: TftpServerEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, "tftp event listener threw");
    }
  }

  private onMalformed(msg: Buffer, who: TftpRequestInfo, err: TftpPacketError): void {
    // A request-shaped packet gets ERROR 4; anything else is dropped (answering arbitrary
    // datagrams would make the server a reflector).
    const op = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
    const isRequest = op === Opcode.RRQ || op === Opcode.WRQ;
    if (isRequest) this.sendError(who, ErrorCode.ILLEGAL_OPERATION, "malformed request");
    this.safeEmit("request-refused", {
      ...who,
      file: undefined,
      reason: `malformed packet: ${err.reason}`,
      errorCode: isRequest ? ErrorCode.ILLEGAL_OPERATION : undefined,
    });
    // Log at most 10 malformed packets a second, so a flood cannot flood the log.
    const now = Date.now();
    if (now - this.malformedWindowStart >= 1000) {
      this.malformedWindowStart = now;
      this.malformedLogged = 0;
    }
    if (this.malformedLogged >= 10) {
      this.malformedSuppressed++;
      return;
    }
    this.malformedLogged++;
    const suppressed = this.malformedSuppressed;
    this.malformedSuppressed = 0;
    this.log.warn(
      { ...who, reason: err.reason, detail: err.message, bytes: msg.length, suppressed },
      "tftp malformed packet refused",
    );
  }

  private refuse(who: TftpRequestInfo, file: string, refusal: Refusal): void {
    this.sendError(who, refusal.errorCode, refusal.clientMessage);
    this.log.warn(
      { ...who, file, reason: refusal.reason, errorCode: refusal.errorCode },
      "tftp request refused",
    );
    this.safeEmit("request-refused", { ...who, file, reason: refusal.reason, errorCode: refusal.errorCode });
  }

  private sendError(who: TftpRequestInfo, code: number, message: string): void {
    const socket = this.socket;
    if (!socket || this.closing) return;
    socket.send(encodePacket({ op: Opcode.ERROR, code, message }), who.remotePort, who.remoteAddress, () => {
      // Send failures (unreachable peer) only matter to the peer.
    });
  }

  private async startTransfer(packet: RequestPacket, who: TftpRequestInfo, key: string): Promise<void> {
    const mode = packet.mode.toLowerCase();
    if (mode !== "octet" && mode !== "netascii") {
      throw new Refusal(ErrorCode.ILLEGAL_OPERATION, `unsupported mode ${mode}`, "only octet and netascii");
    }
    let relative: string;
    try {
      relative = normalizeRequestPath(packet.filename);
    } catch (err) {
      if (err instanceof TftpPathError)
        throw new Refusal(ErrorCode.ACCESS_VIOLATION, err.reason, "access violation");
      throw err;
    }
    const opened = await this.openSource(relative, who);
    let socket: TransferSocket | undefined;
    try {
      if (this.closing)
        throw new Refusal(ErrorCode.NOT_DEFINED, "server shutting down", "server shutting down");
      const netascii = mode === "netascii";
      const negotiated = negotiateRead(packet.options, netascii ? undefined : opened.size, this.limits);
      const reader = netascii ? netasciiReader(opened.reader) : opened.reader;
      const channel = await openTransferSocket(this.dataPath, this.host, who.remoteAddress, who.remotePort);
      socket = channel.socket;
      const dataPath = channel.path;
      if (this.closing)
        throw new Refusal(ErrorCode.NOT_DEFINED, "server shutting down", "server shutting down");
      const feeder = new BlockFeeder(reader, READ_AHEAD + negotiated.blksize * negotiated.windowsize);
      const base = {
        ...who,
        file: relative,
        source: opened.source,
        mode,
        blksize: negotiated.blksize,
        windowsize: negotiated.windowsize,
        dataPath,
      } as const;
      const log = this.log.child({ remote: `${who.remoteAddress}:${who.remotePort}`, file: relative });
      const transfer = new Transfer(
        {
          socket,
          feeder,
          blksize: negotiated.blksize,
          windowsize: negotiated.windowsize,
          oack: negotiated.oack,
          timeoutMs: negotiated.timeoutMs ?? this.timeoutMs,
          maxRetries: this.maxRetries,
        },
        (result) => this.onTransferEnd(key, log, base, result),
      );
      this.active.set(key, transfer);
      log.debug({ mode, size: opened.size, options: negotiated.oack, dataPath }, "tftp transfer started");
      transfer.start();
    } catch (err) {
      opened.reader.close();
      socket?.close();
      throw err;
    }
  }

  private onTransferEnd(
    key: string,
    log: TftpLogger,
    base: Omit<TftpTransferEvent, "bytes" | "blocks" | "retransmits" | "durationMs">,
    result: TransferResult,
  ): void {
    this.active.delete(key);
    const event: TftpTransferEvent = {
      ...base,
      bytes: result.bytes,
      blocks: result.blocks,
      retransmits: result.retransmits,
      durationMs: result.durationMs,
    };
    if (result.ok) {
      log.info(
        {
          bytes: event.bytes,
          durationMs: Math.round(event.durationMs),
          retransmits: event.retransmits,
          blksize: event.blksize,
          windowsize: event.windowsize,
          dataPath: event.dataPath,
        },
        "tftp transfer complete",
      );
      this.safeEmit("transfer-complete", event);
    } else {
      const reason = result.reason ?? "unknown";
      log.warn({ bytes: event.bytes, reason, retransmits: event.retransmits }, "tftp transfer failed");
      this.safeEmit("transfer-failed", { ...event, reason });
    }
  }

  private async openSource(relative: string, who: TftpRequestInfo): Promise<Opened> {
    if (this.opts.resolve) {
      const file = await this.opts.resolve(relative, who);
      if (file !== undefined) return { reader: virtualReader(file), size: file.size, source: "virtual" };
    }
    let fd: number | undefined;
    try {
      const real = await resolveUnderRoot(this.realRoot as string, relative);
      // O_NOFOLLOW: the path realpath returned has no symlinks; one appearing now is a race.
      fd = await openFd(real, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
      const stat = await fstatFd(fd);
      if (!stat.isFile()) throw new Refusal(ErrorCode.FILE_NOT_FOUND, "not a regular file", "file not found");
      // The reader owns the descriptor from here on and closes it.
      return { reader: fdReader(fd), size: stat.size, source: "root" };
    } catch (err) {
      if (fd !== undefined) close(fd, () => {});
      throw mapFsError(err);
    }
  }
}

function mapFsError(err: unknown): unknown {
  if (err instanceof Refusal) return err;
  if (err instanceof TftpPathError)
    return new Refusal(ErrorCode.ACCESS_VIOLATION, err.reason, "access violation");
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "ENOENT":
    case "ENOTDIR":
      return new Refusal(ErrorCode.FILE_NOT_FOUND, "file not found", "file not found");
    case "EACCES":
    case "EPERM":
    case "ELOOP":
      return new Refusal(ErrorCode.ACCESS_VIOLATION, `open failed: ${code}`, "access violation");
    default:
      return err;
  }
}
