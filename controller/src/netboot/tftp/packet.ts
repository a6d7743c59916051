// TFTP packet codec: bytes in, typed packet out, and back. Pure: no sockets, no clocks.
//
// Sources: RFC 1350 (the protocol), RFC 2347 (option extension and OACK). Every read is
// length-checked first; every failure is one error type, TftpPacketError.

export const Opcode = {
  RRQ: 1,
  WRQ: 2,
  DATA: 3,
  ACK: 4,
  ERROR: 5,
  OACK: 6,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Error codes of RFC 1350 section 5, plus 8 from RFC 2347. */
export const ErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_REFUSED: 8,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An option as sent: name and value in the order and case the peer used. */
export type TftpOption = readonly [name: string, value: string];

export interface RequestPacket {
  readonly op: typeof Opcode.RRQ | typeof Opcode.WRQ;
  readonly filename: string;
  readonly mode: string;
  readonly options: readonly TftpOption[];
}
export interface DataPacket {
  readonly op: typeof Opcode.DATA;
  readonly block: number;
  readonly data: Uint8Array;
}
export interface AckPacket {
  readonly op: typeof Opcode.ACK;
  readonly block: number;
}
export interface ErrorPacket {
  readonly op: typeof Opcode.ERROR;
  readonly code: number;
  readonly message: string;
}
export interface OackPacket {
  readonly op: typeof Opcode.OACK;
  readonly options: readonly TftpOption[];
}
export type TftpPacket = RequestPacket | DataPacket | AckPacket | ErrorPacket | OackPacket;

export type TftpPacketErrorReason =
  | "truncated"
  | "unknown-opcode"
  | "unterminated-string"
  | "empty-field"
  | "odd-options"
  | "trailing-bytes"
  | "out-of-range"
  | "nul-in-string";

/** The one error the codec throws. `reason` is stable and fit for logs and metrics. */
export class TftpPacketError extends Error {
  readonly code = "ERR_TFTP_PACKET";
  constructor(
    readonly reason: TftpPacketErrorReason,
    message: string,
  ) {
    super(message);
    this.name = "TftpPacketError";
  }
}

const MAX_BLOCK = 0xffff;

// Strings on the wire are NUL-terminated byte strings. RFC 1350 calls them netascii; file
// names in practice are ASCII, and we read them as UTF-8 so that a UTF-8 name on disk can be
// served. Mode and option names are compared case-insensitively by the caller.
function readString(buf: Uint8Array, start: number, what: string): [value: string, next: number] {
  const end = buf.indexOf(0, start);
  if (end < 0) throw new TftpPacketError("unterminated-string", `${what} is not NUL-terminated`);
  return [Buffer.from(buf.buffer, buf.byteOffset + start, end - start).toString("utf8"), end + 1];
}

function readOptions(buf: Uint8Array, start: number): TftpOption[] {
  const options: TftpOption[] = [];
  let at = start;
  while (at < buf.length) {
    const [name, afterName] = readString(buf, at, "option name");
    if (name.length === 0) throw new TftpPacketError("empty-field", "empty option name");
    if (afterName >= buf.length) throw new TftpPacketError("odd-options", `option ${name} has no value`);
    const [value, afterValue] = readString(buf, afterName, `value of option ${name}`);
    options.push([name, value]);
    at = afterValue;
  }
  return options;
}

function u16(buf: Uint8Array, at: number): number {
  return ((buf[at] ?? 0) << 8) | (buf[at + 1] ?? 0);
}

/** Decode one datagram. Throws TftpPacketError on anything that is not a well-formed packet. */
export function decodePacket(buf: Uint8Array): TftpPacket {
  if (buf.length < 2) throw new TftpPacketError("truncated", `packet of ${buf.length} bytes has no opcode`);
  const op = u16(buf, 0);
  switch (op) {
    //  2 bytes    string    1 byte   string   1 byte   string   1 byte   string   1 byte
    // +--------+----------+--------+--------+--------+--------+--------+--------+--------+--
    // | 01/02  | filename |   0    |  mode  |   0    |  opt1  |   0    | value1 |   0    | ...
    // +--------+----------+--------+--------+--------+--------+--------+--------+--------+--
    //  RRQ/WRQ (RFC 1350 section 5, options from RFC 2347)
    case Opcode.RRQ:
    case Opcode.WRQ: {
      const [filename, afterName] = readString(buf, 2, "filename");
      if (filename.length === 0) throw new TftpPacketError("empty-field", "empty filename");
      const [mode, afterMode] = readString(buf, afterName, "mode");
      if (mode.length === 0) throw new TftpPacketError("empty-field", "empty mode");
      return { op, filename, mode, options: readOptions(buf, afterMode) };
    }
    //  2 bytes    2 bytes    n bytes
    // +--------+----------+----------+
    // |   03   |  Block # |   Data   |
    // +--------+----------+----------+
    //  DATA (RFC 1350 section 5); n < blksize marks the last block
    case Opcode.DATA: {
      if (buf.length < 4) throw new TftpPacketError("truncated", "DATA shorter than its header");
      return { op, block: u16(buf, 2), data: buf.subarray(4) };
    }
    //  2 bytes    2 bytes
    // +--------+----------+
    // |   04   |  Block # |
    // +--------+----------+
    //  ACK (RFC 1350 section 5)
    case Opcode.ACK: {
      if (buf.length < 4) throw new TftpPacketError("truncated", "ACK shorter than 4 bytes");
      if (buf.length > 4) throw new TftpPacketError("trailing-bytes", `ACK of ${buf.length} bytes`);
      return { op, block: u16(buf, 2) };
    }
    //  2 bytes    2 bytes     string    1 byte
    // +--------+-----------+----------+--------+
    // |   05   | ErrorCode |  ErrMsg  |   0    |
    // +--------+-----------+----------+--------+
    //  ERROR (RFC 1350 section 5). Decoding is lenient about one thing: a message that runs to
    //  the end of the datagram without its NUL is accepted, because an error from a peer is
    //  worth reading even when the peer is sloppy.
    case Opcode.ERROR: {
      if (buf.length < 4) throw new TftpPacketError("truncated", "ERROR shorter than its header");
      const end = buf.indexOf(0, 4);
      const stop = end < 0 ? buf.length : end;
      if (end >= 0 && end !== buf.length - 1) {
        throw new TftpPacketError("trailing-bytes", "bytes after the ERROR message");
      }
      const message = Buffer.from(buf.buffer, buf.byteOffset + 4, stop - 4).toString("utf8");
      return { op, code: u16(buf, 2), message };
    }
    //  2 bytes    string    1 byte   string   1 byte
    // +--------+----------+--------+--------+--------+--
    // |   06   |   opt1   |   0    | value1 |   0    | ...
    // +--------+----------+--------+--------+--------+--
    //  OACK (RFC 2347)
    case Opcode.OACK: {
      const options = readOptions(buf, 2);
      if (options.length === 0) throw new TftpPacketError("empty-field", "OACK without options");
      return { op, options };
    }
    default:
      throw new TftpPacketError("unknown-opcode", `unknown opcode ${op}`);
  }
}

function checkU16(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > MAX_BLOCK) {
    throw new TftpPacketError("out-of-range", `${what} ${value} is not a 16-bit unsigned integer`);
  }
}

function stringBytes(value: string, what: string, allowEmpty: boolean): Buffer {
  if (value.includes("\0")) throw new TftpPacketError("nul-in-string", `${what} contains a NUL byte`);
  if (!allowEmpty && value.length === 0) throw new TftpPacketError("empty-field", `empty ${what}`);
  return Buffer.from(value, "utf8");
}

function encodeStrings(op: number, parts: readonly Buffer[]): Buffer {
  let length = 2;
  for (const p of parts) length += p.length + 1;
  const out = Buffer.alloc(length);
  out.writeUInt16BE(op, 0);
  let at = 2;
  for (const p of parts) {
    p.copy(out, at);
    at += p.length + 1; // the NUL is already there: Buffer.alloc zero-fills
  }
  return out;
}

function optionParts(options: readonly TftpOption[]): Buffer[] {
  const parts: Buffer[] = [];
  for (const [name, value] of options) {
    parts.push(stringBytes(name, "option name", false), stringBytes(value, `value of option ${name}`, true));
  }
  return parts;
}

/** Encode one packet. Throws TftpPacketError for values that cannot be put on the wire. */
export function encodePacket(packet: TftpPacket): Buffer {
  switch (packet.op) {
    case Opcode.RRQ:
    case Opcode.WRQ:
      return encodeStrings(packet.op, [
        stringBytes(packet.filename, "filename", false),
        stringBytes(packet.mode, "mode", false),
        ...optionParts(packet.options),
      ]);
    case Opcode.DATA: {
      checkU16(packet.block, "block number");
      const out = Buffer.allocUnsafe(4 + packet.data.length);
      out.writeUInt16BE(Opcode.DATA, 0);
      out.writeUInt16BE(packet.block, 2);
      out.set(packet.data, 4);
      return out;
    }
    case Opcode.ACK: {
      checkU16(packet.block, "block number");
      const out = Buffer.allocUnsafe(4);
      out.writeUInt16BE(Opcode.ACK, 0);
      out.writeUInt16BE(packet.block, 2);
      return out;
    }
    case Opcode.ERROR: {
      checkU16(packet.code, "error code");
      const message = stringBytes(packet.message, "error message", true);
      const out = Buffer.alloc(5 + message.length);
      out.writeUInt16BE(Opcode.ERROR, 0);
      out.writeUInt16BE(packet.code, 2);
      message.copy(out, 4);
      return out;
    }
    case Opcode.OACK:
      if (packet.options.length === 0) throw new TftpPacketError("empty-field", "OACK without options");
      return encodeStrings(Opcode.OACK, optionParts(packet.options));
  }
}

/** Write the 4-byte DATA header in place; the hot path builds DATA packets with this. */
export function writeDataHeader(out: Buffer, block: number): void {
  out[0] = 0;
  out[1] = Opcode.DATA;
  out[2] = (block >>> 8) & 0xff;
  out[3] = block & 0xff;
}
