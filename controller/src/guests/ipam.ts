// Addresses for guests (DIPs) and roles (VIPs).
//
// One fleet-wide DIP pool, 10.78.0.0/16 by default: every host's isolated guest network is the
// whole subnet with the same gateway address (10.78.0.1) on its bridge. The gateway never
// leaves a host, so the same address on every host is harmless, and a guest keeps a DIP that
// is unique across the fleet wherever it is placed (no per-host renumbering, no per-host
// subnet to allocate). VIPs come from their own range, 10.79.0.0/24 by default.
//
// Uniqueness is the database's job: Guest.dip and Role.vip are unique columns. An address is
// claimed by inserting (or updating) the row that holds it; when another controller got there
// first the insert fails with a unique-constraint violation and the next free address is tried.
import { WeftError } from "../errors.js";
import type { Db } from "../store/db.js";

export interface IpamConfig {
  /** Fleet-wide guest subnet, CIDR. */
  guestSubnet: string;
  /** Gateway address on every host's guest bridge (inside guestSubnet). */
  gateway: string;
  /** VIP range, CIDR. */
  vipRange: string;
}

export const DEFAULT_IPAM: IpamConfig = {
  guestSubnet: "10.78.0.0/16",
  gateway: "10.78.0.1",
  vipRange: "10.79.0.0/24",
};

export function ipToInt(ip: string): number {
  const o = ip.split(".");
  if (o.length !== 4) throw new WeftError("invalid_request", "ADDRESS_INVALID", `${ip} is not IPv4`);
  let n = 0;
  for (const p of o) {
    const v = Number(p);
    if (!/^\d{1,3}$/.test(p) || v > 255)
      throw new WeftError("invalid_request", "ADDRESS_INVALID", `${ip} is not IPv4`);
    n = n * 256 + v;
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export interface Cidr {
  network: number;
  prefix: number;
  size: number;
}

export function parseCidr(cidr: string): Cidr {
  const [ip, len] = cidr.split("/");
  const prefix = Number(len);
  if (ip === undefined || !Number.isInteger(prefix) || prefix < 8 || prefix > 30)
    throw new WeftError("invalid_request", "ADDRESS_INVALID", `${cidr} is not an IPv4 CIDR of /8../30`);
  const size = 2 ** (32 - prefix);
  const network = ipToInt(ip) - (ipToInt(ip) % size);
  return { network, prefix, size };
}

/** Usable host addresses of a subnet (not the network or broadcast address), minus `reserved`. */
export function* hostAddresses(cidr: string, reserved: ReadonlySet<string> = new Set()): Generator<string> {
  const c = parseCidr(cidr);
  for (let i = 1; i < c.size - 1; i++) {
    const ip = intToIp(c.network + i);
    if (!reserved.has(ip)) yield ip;
  }
}

/** The first address of the pool not in `taken`, or null when the pool is exhausted. */
export function firstFree(
  cidr: string,
  taken: ReadonlySet<string>,
  reserved: ReadonlySet<string> = new Set(),
): string | null {
  for (const ip of hostAddresses(cidr, reserved)) if (!taken.has(ip)) return ip;
  return null;
}

/** Whether err is a unique-constraint violation on `field` (Prisma P2002, any adapter). */
export function isUniqueViolation(err: unknown, field: string): boolean {
  const e = err as { code?: unknown; meta?: unknown; message?: unknown } | null;
  if (!e || e.code !== "P2002") return false;
  const where = JSON.stringify(e.meta ?? {}) + String(e.message ?? "");
  return where.includes(field);
}

const MAX_TRIES = 32;

export class Ipam {
  constructor(
    private readonly db: Db,
    readonly config: IpamConfig = DEFAULT_IPAM,
  ) {
    const g = parseCidr(config.guestSubnet);
    const gw = ipToInt(config.gateway);
    if (gw <= g.network || gw >= g.network + g.size - 1)
      throw new WeftError(
        "invalid_request",
        "ADDRESS_INVALID",
        "the gateway must lie inside the guest subnet",
      );
    parseCidr(config.vipRange);
  }

  get prefix(): number {
    return parseCidr(this.config.guestSubnet).prefix;
  }

  /**
   * Claims a DIP by running `insert(dip)` (which writes the row holding it). On a conflict
   * with another writer the next free address is tried.
   */
  async claimDip<T>(insert: (dip: string) => Promise<T>): Promise<T> {
    const reserved = new Set([this.config.gateway]);
    const lost = new Set<string>();
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const rows = await this.db.guest.findMany({ where: { dip: { not: null } }, select: { dip: true } });
      const taken = new Set([...rows.map((r) => r.dip!), ...lost]);
      const dip = firstFree(this.config.guestSubnet, taken, reserved);
      if (dip === null)
        throw new WeftError("conflict", "DIP_POOL_EXHAUSTED", `no free DIP in ${this.config.guestSubnet}`);
      try {
        return await insert(dip);
      } catch (err) {
        if (!isUniqueViolation(err, "dip")) throw err;
        lost.add(dip);
      }
    }
    throw new WeftError("unavailable", "DIP_CONTENDED", "could not claim a DIP: too many concurrent claims");
  }

  /** Gives a role a VIP unless it has one; returns the role's VIP. */
  async claimVip(roleId: string): Promise<string> {
    const lost = new Set<string>();
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const role = await this.db.role.findUnique({ where: { id: roleId }, select: { vip: true } });
      if (!role) throw new WeftError("not_found", "ROLE_NOT_FOUND", `role ${roleId} not found`);
      if (role.vip) return role.vip;
      const rows = await this.db.role.findMany({ where: { vip: { not: null } }, select: { vip: true } });
      const taken = new Set([...rows.map((r) => r.vip!), ...lost]);
      const vip = firstFree(this.config.vipRange, taken);
      if (vip === null)
        throw new WeftError("conflict", "VIP_POOL_EXHAUSTED", `no free VIP in ${this.config.vipRange}`);
      try {
        const n = await this.db.role.updateMany({ where: { id: roleId, vip: null }, data: { vip } });
        if (n.count === 1) return vip;
        // Another controller gave this role a VIP meanwhile: read it on the next turn.
      } catch (err) {
        if (!isUniqueViolation(err, "vip")) throw err;
        lost.add(vip);
      }
    }
    throw new WeftError("unavailable", "VIP_CONTENDED", "could not claim a VIP: too many concurrent claims");
  }
}
