// Where leases live. The server only needs these few operations; MemoryLeaseStore serves unit
// tests and a store-less lab, PrismaLeaseStore (lease-store-prisma.ts) the controller.
//
// Concurrency contract: claim() is the arbiter. It must be atomic against every other
// claim()/update() on the same address, across processes when the store is shared, so that an
// address is never held by two clients (RFC 2131 section 4.3.1: a server must not offer an
// address in use).

/** offered | bound | released | declined | expired, as in the Lease model. */
export type LeaseState = "offered" | "bound" | "released" | "declined" | "expired";

export interface Lease {
  ip: string;
  /** Lower-case colon-separated MAC; null for a declined address. */
  mac: string | null;
  /** Option 61 as hex; null when the client sent none. */
  clientId: string | null;
  hostname: string | null;
  state: LeaseState;
  /** A static reservation. */
  reserved: boolean;
  expiresAt: Date;
  machineId: string | null;
}

/** Who asks: RFC 2132 section 9.14 identifies a client by option 61 when sent, else by chaddr. */
export interface ClientKey {
  mac: string;
  clientId: string | null;
}

/**
 * Whether a lease row belongs to a client. The client identifier decides when both sides
 * have one; otherwise the MAC does, so a PXE ROM that sends no option 61 and the OS that
 * follows it with one keep the same address.
 */
export function ownedBy(lease: Pick<Lease, "mac" | "clientId">, client: ClientKey): boolean {
  if (lease.clientId !== null && client.clientId !== null) return lease.clientId === client.clientId;
  return lease.mac !== null && lease.mac === client.mac;
}

/** Whether an address is free for anyone at `now`: not reserved and past its expiry. */
export function isFree(lease: Pick<Lease, "reserved" | "expiresAt">, now: Date): boolean {
  return !lease.reserved && lease.expiresAt.getTime() <= now.getTime();
}

export interface LeasePatch {
  state: LeaseState;
  expiresAt: Date;
  hostname?: string | null;
  machineId?: string | null;
}

export interface LeaseStore {
  /** The rows this client holds or held (any state, any expiry). */
  findByClient(client: ClientKey): Promise<Lease[]>;
  get(ip: string): Promise<Lease | undefined>;
  /** Addresses not free at `now` (unexpired or reserved): a hint for the allocator. */
  listTaken(now: Date): Promise<string[]>;
  /**
   * Atomically take lease.ip for the client in `lease`. Succeeds when the address has no row,
   * or its row belongs to that client and is not declined, or its row is free at `now`.
   * Returns the stored lease, or undefined when another client holds the address.
   */
  claim(lease: Lease, now: Date): Promise<Lease | undefined>;
  /** Change a lease the client holds (not declined); false when it does not hold it. */
  update(ip: string, client: ClientKey, patch: LeasePatch): Promise<boolean>;
  /** Mark an address the client held as declined until `until` (RFC 2131 section 4.3.3). */
  decline(ip: string, client: ClientKey, until: Date): Promise<boolean>;
}

/** The client a lease row is written for. */
export function claimant(lease: Pick<Lease, "mac" | "clientId">): ClientKey {
  return { mac: lease.mac ?? "", clientId: lease.clientId };
}

/** The claim rule, shared by the in-memory store and the tests. */
export function canClaim(existing: Lease | undefined, client: ClientKey, now: Date): boolean {
  if (existing === undefined) return true;
  if (existing.state !== "declined" && ownedBy(existing, client)) return true;
  return isFree(existing, now);
}

export class MemoryLeaseStore implements LeaseStore {
  private readonly rows = new Map<string, Lease>();

  async findByClient(client: ClientKey): Promise<Lease[]> {
    return [...this.rows.values()].filter((l) => ownedBy(l, client)).map((l) => ({ ...l }));
  }

  async get(ip: string): Promise<Lease | undefined> {
    const l = this.rows.get(ip);
    return l && { ...l };
  }

  async listTaken(now: Date): Promise<string[]> {
    return [...this.rows.values()].filter((l) => !isFree(l, now)).map((l) => l.ip);
  }

  async claim(lease: Lease, now: Date): Promise<Lease | undefined> {
    const existing = this.rows.get(lease.ip);
    if (!canClaim(existing, claimant(lease), now)) return undefined;
    const row = { ...lease, machineId: lease.machineId ?? existing?.machineId ?? null };
    this.rows.set(lease.ip, row);
    return { ...row };
  }

  async update(ip: string, client: ClientKey, patch: LeasePatch): Promise<boolean> {
    const existing = this.rows.get(ip);
    if (!existing || existing.state === "declined" || !ownedBy(existing, client)) return false;
    this.rows.set(ip, { ...existing, ...patch });
    return true;
  }

  async decline(ip: string, client: ClientKey, until: Date): Promise<boolean> {
    const existing = this.rows.get(ip);
    if (!existing || !ownedBy(existing, client)) return false;
    this.rows.set(ip, {
      ...existing,
      mac: null,
      clientId: null,
      state: "declined",
      reserved: false,
      expiresAt: until,
    });
    return true;
  }

  /** Every row, for tests. */
  all(): Lease[] {
    return [...this.rows.values()].map((l) => ({ ...l }));
  }
}
