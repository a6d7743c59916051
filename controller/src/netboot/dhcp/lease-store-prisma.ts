// LeaseStore on the Prisma Lease model. The unique ip column is the arbiter between
// concurrent requests and between controllers sharing one database: a new address is taken by
// INSERT (a second insert fails on the unique index), a held one by a single conditional
// UPDATE whose WHERE restates the claim rule, so the check and the write are one statement.
import type { Db } from "../../store/db.js";
import type { Prisma } from "../../store/generated/client.js";
import type { ClientKey, Lease, LeasePatch, LeaseState, LeaseStore } from "./lease-store.js";
import { claimant, ownedBy } from "./lease-store.js";

type Row = {
  ip: string;
  mac: string | null;
  clientId: string | null;
  hostname: string | null;
  state: string;
  reserved: boolean;
  expiresAt: Date;
  machineId: string | null;
};

const LEASE_STATES: ReadonlySet<string> = new Set(["offered", "bound", "released", "declined", "expired"]);

function toLease(r: Row): Lease {
  return {
    ip: r.ip,
    mac: r.mac,
    clientId: r.clientId,
    hostname: r.hostname,
    state: (LEASE_STATES.has(r.state) ? r.state : "expired") as LeaseState,
    reserved: r.reserved,
    expiresAt: r.expiresAt,
    machineId: r.machineId,
  };
}

const select = {
  ip: true,
  mac: true,
  clientId: true,
  hostname: true,
  state: true,
  reserved: true,
  expiresAt: true,
  machineId: true,
} as const;

/** The WHERE form of ownedBy() (lease-store.ts). */
function ownerWhere(client: ClientKey): Prisma.LeaseWhereInput {
  if (client.clientId === null) return { mac: client.mac };
  return { OR: [{ clientId: client.clientId }, { clientId: null, mac: client.mac }] };
}

function isUniqueViolation(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === "P2002";
}

export class PrismaLeaseStore implements LeaseStore {
  constructor(private readonly db: Db) {}

  async findByClient(client: ClientKey): Promise<Lease[]> {
    const where: Prisma.LeaseWhereInput =
      client.clientId === null
        ? { mac: client.mac }
        : { OR: [{ clientId: client.clientId }, { mac: client.mac }] };
    const rows = await this.db.lease.findMany({ where, select });
    return rows.map(toLease).filter((l) => ownedBy(l, client));
  }

  async get(ip: string): Promise<Lease | undefined> {
    const row = await this.db.lease.findUnique({ where: { ip }, select });
    return row ? toLease(row) : undefined;
  }

  async listTaken(now: Date): Promise<string[]> {
    const rows = await this.db.lease.findMany({
      where: { OR: [{ reserved: true }, { expiresAt: { gt: now } }] },
      select: { ip: true },
    });
    return rows.map((r) => r.ip);
  }

  async claim(lease: Lease, now: Date): Promise<Lease | undefined> {
    const data = {
      mac: lease.mac,
      clientId: lease.clientId,
      hostname: lease.hostname,
      state: lease.state,
      reserved: lease.reserved,
      expiresAt: lease.expiresAt,
    };
    // Most claims in a busy pool are for addresses that were never used: try the insert first.
    try {
      const row = await this.db.lease.create({
        data: { ip: lease.ip, ...data, ...(lease.machineId !== null ? { machineId: lease.machineId } : {}) },
        select,
      });
      return toLease(row);
    } catch (e) {
      if (!isUniqueViolation(e)) throw e;
    }
    // The row exists: take it only if it is this client's (and not declined) or free.
    const { count } = await this.db.lease.updateMany({
      where: {
        ip: lease.ip,
        OR: [
          { AND: [ownerWhere(claimant(lease)), { state: { not: "declined" } }] },
          { reserved: false, expiresAt: { lte: now } },
        ],
      },
      data: { ...data, ...(lease.machineId !== null ? { machineId: lease.machineId } : {}) },
    });
    if (count === 0) return undefined;
    // The row now holds exactly what was written; no second round trip to read it back.
    return { ...lease };
  }

  async update(ip: string, client: ClientKey, patch: LeasePatch): Promise<boolean> {
    const { count } = await this.db.lease.updateMany({
      where: { AND: [{ ip }, ownerWhere(client), { state: { not: "declined" } }] },
      data: patch,
    });
    return count > 0;
  }

  async decline(ip: string, client: ClientKey, until: Date): Promise<boolean> {
    const { count } = await this.db.lease.updateMany({
      where: { AND: [{ ip }, ownerWhere(client)] },
      data: { mac: null, clientId: null, state: "declined", reserved: false, expiresAt: until },
    });
    return count > 0;
  }
}
