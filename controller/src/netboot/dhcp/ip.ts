// IPv4 addresses as unsigned 32-bit numbers and dotted quads, and CIDR subnets.

export const ZERO_IP = "0.0.0.0";
export const BROADCAST_IP = "255.255.255.255";

/** Dotted quad to an unsigned 32-bit number; undefined when not a valid IPv4 address. */
export function ipToInt(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function mustIpToInt(ip: string): number {
  const n = ipToInt(ip);
  if (n === undefined) throw new RangeError(`not an IPv4 address: ${JSON.stringify(ip)}`);
  return n;
}

export function intToIp(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function readIp(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

export function writeIp(buf: Buffer, offset: number, ip: string): void {
  buf.writeUInt32BE(mustIpToInt(ip), offset);
}

export interface Subnet {
  /** Network address as a number. */
  readonly network: number;
  readonly prefix: number;
  /** Netmask as a number. */
  readonly mask: number;
  readonly broadcast: number;
}

/** Parse "10.0.0.0/24". Host bits set in the address are cleared. */
export function parseCidr(cidr: string): Subnet {
  const [addr, len] = cidr.split("/");
  const prefix = Number(len);
  const base = addr === undefined ? undefined : ipToInt(addr);
  if (base === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new RangeError(`not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (base & mask) >>> 0;
  return { network, prefix, mask, broadcast: (network | ~mask) >>> 0 };
}

export function inSubnet(subnet: Subnet, ip: number): boolean {
  return (ip & subnet.mask) >>> 0 === subnet.network;
}

/** Lower-case colon-separated MAC from the first hlen bytes of chaddr. */
export function formatMac(chaddr: Buffer, hlen = 6): string {
  return [...chaddr.subarray(0, hlen)].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

export function parseMac(mac: string): Buffer {
  const hex = mac.toLowerCase().replace(/[:-]/g, "");
  if (!/^[0-9a-f]{12}$/.test(hex)) throw new RangeError(`not a MAC address: ${JSON.stringify(mac)}`);
  return Buffer.from(hex, "hex");
}
