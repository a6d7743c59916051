// The DHCPv4 packet codec: bytes in, a typed message out, and back. Pure: no sockets, no
// clock, no logging. decode() throws DhcpDecodeError and nothing else.
//
// The BOOTP/DHCP message (RFC 2131 section 2, figure 1):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------+---------------+---------------+---------------+
//  |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//  +---------------+---------------+---------------+---------------+
//  |                            xid (4)                            |
//  +-------------------------------+-------------------------------+
//  |           secs (2)            |           flags (2)           |
//  +-------------------------------+-------------------------------+
//  |                          ciaddr  (4)                          |
//  |                          yiaddr  (4)                          |
//  |                          siaddr  (4)                          |
//  |                          giaddr  (4)                          |
//  +---------------------------------------------------------------+
//  |                          chaddr  (16)                         |
//  |                          sname   (64)                         |
//  |                          file    (128)                        |
//  +---------------------------------------------------------------+
//  |  magic cookie 99.130.83.99 (4)  |  options (variable)         |
//  +---------------------------------------------------------------+
import { DhcpDecodeError } from "./errors.js";
import { readIp, writeIp, ZERO_IP } from "./ip.js";
import { Opt, read, type DhcpOptions } from "./options.js";
import {
  readClientArch,
  readClientNdi,
  readClientUuid,
  readEncapsulated,
  readUserClass,
  type ClientNdi,
  type UserClass,
} from "./options-pxe.js";

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
/** RFC 2131 section 2: the leftmost bit of flags asks for a broadcast reply. */
export const FLAG_BROADCAST = 0x8000;

const OFF_SNAME = 44;
const OFF_FILE = 108;
const OFF_COOKIE = 236;
const OFF_OPTIONS = 240;
const SNAME_LEN = 64;
const FILE_LEN = 128;
/** RFC 2131 section 3 / RFC 2132 section 2: the first four octets of the options field. */
export const MAGIC_COOKIE = 0x63825363;
/** RFC 951 (64-octet vend field) and RFC 1542 section 2.1: BOOTP messages are at least 300 octets. */
export const BOOTP_MIN_SIZE = 300;
/** The largest datagram decode() accepts. Real clients stay near 576 (RFC 2131 section 2). */
export const DHCP_MAX_PACKET = 8192;

export interface DhcpMessage {
  op: number;
  htype: number;
  hlen: number;
  hops: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: string;
  yiaddr: string;
  siaddr: string;
  giaddr: string;
  /** The 16-byte chaddr field; the hardware address is its first hlen bytes. */
  chaddr: Buffer;
  /** Server host name; empty when the field is overloaded with options (option 52). */
  sname: string;
  /** Boot file name; empty when the field is overloaded with options (option 52). */
  file: string;
  /**
   * Option values by code. A code seen several times (RFC 3396 long options, or split over
   * the options/file/sname fields) holds the concatenation of its parts. Option 52 stays
   * here for reference; pad and end never do.
   */
  options: DhcpOptions;
}

/** Read a NUL-terminated string from a fixed field. */
function readField(buf: Buffer, off: number, len: number): string {
  const field = buf.subarray(off, off + len);
  const end = field.indexOf(0);
  return field.toString("latin1", 0, end === -1 ? len : end);
}

/**
 * Walk one option area (RFC 2132 section 2): pad (0) is one octet with no length, end (255)
 * stops the area, everything else is code, length, value. Values are appended to parts so
 * repeated codes concatenate in order (RFC 3396 section 7).
 */
function scanOptions(area: Buffer, parts: Map<number, Buffer[]>, where: string): void {
  let i = 0;
  while (i < area.length) {
    const code = area[i] as number;
    if (code === Opt.Pad) {
      i += 1;
      continue;
    }
    if (code === Opt.End) return;
    if (i + 1 >= area.length) {
      throw new DhcpDecodeError("OPTION_OVERFLOW", `option ${code} in ${where} has no length octet`, code);
    }
    const len = area[i + 1] as number;
    if (i + 2 + len > area.length) {
      throw new DhcpDecodeError(
        "OPTION_OVERFLOW",
        `option ${code} in ${where} claims ${len} octets, ${area.length - i - 2} remain`,
        code,
      );
    }
    const list = parts.get(code);
    const value = area.subarray(i + 2, i + 2 + len);
    if (list) list.push(value);
    else parts.set(code, [value]);
    i += 2 + len;
  }
  // An area without an end option is accepted: it runs to the end of its field.
}

export function decode(buf: Buffer): DhcpMessage {
  if (buf.length < OFF_OPTIONS) {
    throw new DhcpDecodeError(
      "TRUNCATED",
      `${buf.length} octets, a DHCP message has at least ${OFF_OPTIONS}`,
    );
  }
  if (buf.length > DHCP_MAX_PACKET) {
    throw new DhcpDecodeError("OVERSIZED", `${buf.length} octets, more than ${DHCP_MAX_PACKET}`);
  }
  const op = buf.readUInt8(0);
  if (op !== BOOTREQUEST && op !== BOOTREPLY) throw new DhcpDecodeError("BAD_OP", `op ${op}`);
  const hlen = buf.readUInt8(2);
  if (hlen > 16) throw new DhcpDecodeError("BAD_HLEN", `hlen ${hlen} exceeds chaddr`);
  if (buf.readUInt32BE(OFF_COOKIE) !== MAGIC_COOKIE) {
    throw new DhcpDecodeError("BAD_MAGIC", `magic cookie ${buf.toString("hex", OFF_COOKIE, OFF_OPTIONS)}`);
  }

  const parts = new Map<number, Buffer[]>();
  scanOptions(buf.subarray(OFF_OPTIONS), parts, "options");

  // RFC 2132 section 9.3: option 52 says the file and/or sname fields carry options too;
  // RFC 3396 section 7 fixes the order: options field, then file, then sname.
  let overload = 0;
  const ov = parts.get(Opt.Overload);
  if (ov) {
    const v = Buffer.concat(ov);
    if (v.length !== 1 || v[0] === undefined || v[0] < 1 || v[0] > 3) {
      throw new DhcpDecodeError("BAD_OPTION", `option 52: value ${v.toString("hex")} is not 1, 2 or 3`, 52);
    }
    overload = v[0];
    if (overload & 1) scanOptions(buf.subarray(OFF_FILE, OFF_FILE + FILE_LEN), parts, "file");
    if (overload & 2) scanOptions(buf.subarray(OFF_SNAME, OFF_SNAME + SNAME_LEN), parts, "sname");
  }

  const options: DhcpOptions = new Map();
  for (const [code, list] of parts) {
    options.set(code, list.length === 1 ? Buffer.from(list[0] as Buffer) : Buffer.concat(list));
  }

  const chaddr = Buffer.alloc(16);
  buf.copy(chaddr, 0, 28, 44);
  return {
    op,
    htype: buf.readUInt8(1),
    hlen,
    hops: buf.readUInt8(3),
    xid: buf.readUInt32BE(4),
    secs: buf.readUInt16BE(8),
    flags: buf.readUInt16BE(10),
    ciaddr: readIp(buf, 12),
    yiaddr: readIp(buf, 16),
    siaddr: readIp(buf, 20),
    giaddr: readIp(buf, 24),
    chaddr,
    sname: overload & 2 ? "" : readField(buf, OFF_SNAME, SNAME_LEN),
    file: overload & 1 ? "" : readField(buf, OFF_FILE, FILE_LEN),
    options,
  };
}

/** Write one option, split into 255-octet pieces when longer (RFC 3396 section 5). */
function pushOption(out: Buffer[], code: number, value: Buffer): void {
  if (value.length === 0) {
    out.push(Buffer.from([code, 0]));
    return;
  }
  for (let i = 0; i < value.length; i += 255) {
    const piece = value.subarray(i, Math.min(i + 255, value.length));
    out.push(Buffer.from([code, piece.length]), piece);
  }
}

function writeField(buf: Buffer, off: number, len: number, value: string, name: string): void {
  const b = Buffer.from(value, "latin1");
  if (b.length > len) throw new RangeError(`${name} is ${b.length} octets, the field holds ${len}`);
  b.copy(buf, off);
}

/**
 * Encode a message. Option 53 goes first (some PXE ROMs look for it there); the others keep
 * the map's order; pad and end in the map are ignored and option 52 is not produced: long
 * messages grow past 300 octets instead. The result is at least BOOTP_MIN_SIZE octets.
 * Throws RangeError for values that cannot be encoded (our own bug, not the client's).
 */
export function encode(msg: DhcpMessage): Buffer {
  const opts: Buffer[] = [];
  const type = msg.options.get(Opt.MessageType);
  if (type) pushOption(opts, Opt.MessageType, type);
  for (const [code, value] of msg.options) {
    if (code === Opt.MessageType || code === Opt.Pad || code === Opt.End || code === Opt.Overload) continue;
    if (!Number.isInteger(code) || code < 0 || code > 255) throw new RangeError(`option code ${code}`);
    pushOption(opts, code, value);
  }
  opts.push(Buffer.from([Opt.End]));
  const optBytes = Buffer.concat(opts);
  const size = Math.max(BOOTP_MIN_SIZE, OFF_OPTIONS + optBytes.length);
  const buf = Buffer.alloc(size); // zero-filled: the tail is pad options
  buf.writeUInt8(msg.op, 0);
  buf.writeUInt8(msg.htype, 1);
  buf.writeUInt8(msg.hlen, 2);
  buf.writeUInt8(msg.hops, 3);
  buf.writeUInt32BE(msg.xid >>> 0, 4);
  buf.writeUInt16BE(msg.secs, 8);
  buf.writeUInt16BE(msg.flags, 10);
  writeIp(buf, 12, msg.ciaddr);
  writeIp(buf, 16, msg.yiaddr);
  writeIp(buf, 20, msg.siaddr);
  writeIp(buf, 24, msg.giaddr);
  msg.chaddr.copy(buf, 28, 0, Math.min(16, msg.chaddr.length));
  writeField(buf, OFF_SNAME, SNAME_LEN, msg.sname, "sname");
  writeField(buf, OFF_FILE, FILE_LEN, msg.file, "file");
  buf.writeUInt32BE(MAGIC_COOKIE, OFF_COOKIE);
  optBytes.copy(buf, OFF_OPTIONS);
  return buf;
}

/** An empty message with zero addresses, for building requests and replies. */
export function emptyMessage(op: number): DhcpMessage {
  return {
    op,
    htype: 1,
    hlen: 6,
    hops: 0,
    xid: 0,
    secs: 0,
    flags: 0,
    ciaddr: ZERO_IP,
    yiaddr: ZERO_IP,
    siaddr: ZERO_IP,
    giaddr: ZERO_IP,
    chaddr: Buffer.alloc(16),
    sname: "",
    file: "",
    options: new Map(),
  };
}

/** The options a server acts on, typed. */
export interface ClientOptions {
  messageType?: number;
  requestedIp?: string;
  serverId?: string;
  leaseTime?: number;
  paramRequestList?: number[];
  maxMessageSize?: number;
  hostname?: string;
  vendorClass?: string;
  /** Option 61 as lower-case hex (RFC 2132 section 9.14). */
  clientId?: string;
  userClass?: UserClass;
  clientArch?: number[];
  clientNdi?: ClientNdi;
  clientUuid?: string;
  /** Option 82, echoed back untouched in replies (RFC 3046 section 2.2). */
  relayAgentInfo?: Buffer;
  /** Option 175 sub-options, when well formed. */
  ipxe?: Map<number, Buffer>;
  /** Option 43 raw bytes. */
  vendorSpecific?: Buffer;
}

/** Typed view of the options; throws DhcpDecodeError("BAD_OPTION") for malformed values. */
export function clientOptions(options: DhcpOptions): ClientOptions {
  const o: ClientOptions = {};
  const v = (code: number): Buffer | undefined => options.get(code);
  let b: Buffer | undefined;
  if ((b = v(Opt.MessageType))) {
    const t = read.u8(Opt.MessageType, b);
    if (t < 1 || t > 18) throw new DhcpDecodeError("BAD_OPTION", `option 53: message type ${t}`, 53);
    o.messageType = t;
  }
  if ((b = v(Opt.RequestedIp))) o.requestedIp = read.ip(Opt.RequestedIp, b);
  if ((b = v(Opt.ServerId))) o.serverId = read.ip(Opt.ServerId, b);
  if ((b = v(Opt.LeaseTime))) o.leaseTime = read.u32(Opt.LeaseTime, b);
  if ((b = v(Opt.ParamRequestList))) o.paramRequestList = read.u8list(Opt.ParamRequestList, b);
  if ((b = v(Opt.MaxMessageSize))) o.maxMessageSize = read.u16(Opt.MaxMessageSize, b);
  if ((b = v(Opt.Hostname))) o.hostname = read.str(Opt.Hostname, b);
  if ((b = v(Opt.VendorClass))) o.vendorClass = read.str(Opt.VendorClass, b);
  if ((b = v(Opt.ClientId))) {
    // RFC 2132 section 9.14: type octet plus at least one octet of identifier.
    if (b.length < 2) throw new DhcpDecodeError("BAD_OPTION", `option 61: length ${b.length}`, 61);
    o.clientId = b.toString("hex");
  }
  if ((b = v(Opt.UserClass))) o.userClass = readUserClass(b);
  if ((b = v(Opt.ClientArch))) o.clientArch = readClientArch(b);
  if ((b = v(Opt.ClientNdi))) o.clientNdi = readClientNdi(b);
  if ((b = v(Opt.ClientUuid))) o.clientUuid = readClientUuid(b);
  if ((b = v(Opt.RelayAgentInfo))) o.relayAgentInfo = b;
  if ((b = v(Opt.VendorSpecific))) o.vendorSpecific = b;
  if ((b = v(Opt.Ipxe))) {
    const sub = readEncapsulated(b);
    if (sub) o.ipxe = sub;
  }
  return o;
}

/** decode() plus the typed options: the whole of what a server needs from a datagram. */
export function decodeRequest(buf: Buffer): { msg: DhcpMessage; opts: ClientOptions } {
  const msg = decode(buf);
  return { msg, opts: clientOptions(msg.options) };
}
