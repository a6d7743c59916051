// DHCP option codes and value codecs for the options Weft reads or writes (RFC 2132 unless
// noted). Values on the wire are raw bytes in a Map keyed by code; these helpers turn them
// into typed values and back. Every reader checks the length first and throws
// DhcpDecodeError("BAD_OPTION") for a value that cannot be what the option says.
import { DhcpDecodeError } from "./errors.js";
import { readIp, writeIp } from "./ip.js";

export const Opt = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  DnsServers: 6,
  Hostname: 12,
  DomainName: 15,
  BroadcastAddress: 28,
  VendorSpecific: 43,
  RequestedIp: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerId: 54,
  ParamRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  RenewalTime: 58,
  RebindingTime: 59,
  VendorClass: 60,
  ClientId: 61,
  TftpServer: 66,
  BootFile: 67,
  UserClass: 77,
  RelayAgentInfo: 82,
  ClientArch: 93,
  ClientNdi: 94,
  ClientUuid: 97,
  Ipxe: 175,
  End: 255,
} as const;

/** DHCP message types, option 53 (RFC 2132 section 9.6). */
export const MessageType = {
  Discover: 1,
  Offer: 2,
  Request: 3,
  Decline: 4,
  Ack: 5,
  Nak: 6,
  Release: 7,
  Inform: 8,
} as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

export const messageTypeName: Record<number, string> = {
  1: "DISCOVER",
  2: "OFFER",
  3: "REQUEST",
  4: "DECLINE",
  5: "ACK",
  6: "NAK",
  7: "RELEASE",
  8: "INFORM",
};

/** Raw option values by code, in the order they were read or set. */
export type DhcpOptions = Map<number, Buffer>;

function bad(code: number, why: string): DhcpDecodeError {
  return new DhcpDecodeError("BAD_OPTION", `option ${code}: ${why}`, code);
}

function wantLength(code: number, v: Buffer, n: number): void {
  if (v.length !== n) throw bad(code, `length ${v.length}, expected ${n}`);
}

export const read = {
  u8(code: number, v: Buffer): number {
    wantLength(code, v, 1);
    return v.readUInt8(0);
  },
  u16(code: number, v: Buffer): number {
    wantLength(code, v, 2);
    return v.readUInt16BE(0);
  },
  u32(code: number, v: Buffer): number {
    wantLength(code, v, 4);
    return v.readUInt32BE(0);
  },
  ip(code: number, v: Buffer): string {
    wantLength(code, v, 4);
    return readIp(v, 0);
  },
  ips(code: number, v: Buffer): string[] {
    if (v.length === 0 || v.length % 4 !== 0) throw bad(code, `length ${v.length} is not a multiple of 4`);
    const out: string[] = [];
    for (let i = 0; i < v.length; i += 4) out.push(readIp(v, i));
    return out;
  },
  /** NVT ASCII; a trailing NUL some clients add is dropped (RFC 2132 section 2). */
  str(_code: number, v: Buffer): string {
    const end = v.indexOf(0);
    return v.toString("latin1", 0, end === -1 ? v.length : end);
  },
  u8list(code: number, v: Buffer): number[] {
    if (v.length === 0) throw bad(code, "empty list");
    return [...v];
  },
};

export const write = {
  u8: (n: number): Buffer => Buffer.from([n]),
  u16(n: number): Buffer {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(n, 0);
    return b;
  },
  u32(n: number): Buffer {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n >>> 0, 0);
    return b;
  },
  ip(ip: string): Buffer {
    const b = Buffer.alloc(4);
    writeIp(b, 0, ip);
    return b;
  },
  ips(ips: readonly string[]): Buffer {
    const b = Buffer.alloc(4 * ips.length);
    ips.forEach((ip, i) => writeIp(b, 4 * i, ip));
    return b;
  },
  str: (s: string): Buffer => Buffer.from(s, "latin1"),
};
