// Placement: which host a new guest goes to. Pure: the caller gathers hosts and their guests.
//
// Capacity is never overcommitted:
// - CPU in MHz: a host offers cpus × cpuMhz; a guest takes vcpus × cpuMhz. A vCPU cannot be
//   faster than one host core, nor can a guest have more vCPUs than the host has cores.
// - memory: the host's memory less a reserve for the host itself; a guest takes its hard
//   limit (RAM + QEMU overhead, see spec.ts), the most its QEMU may ever use.
// - disk: the full virtual size of every overlay (sparse today, full some day).
// - network: the host's uplink rate; a guest takes the larger of its in/out caps.
//
// Among hosts that fit, spread the role: the fewest instances of this role first, then the
// most free memory, then the host id (stable).
import { WeftError } from "../errors.js";
import { memoryHardLimitMiB } from "./spec.js";

export interface PlacementHost {
  id: string;
  name: string;
  state: string;
  cpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  kvm: boolean;
  /** Uplink capacity in KB/s. */
  netKBps: number;
}

export interface PlacementGuest {
  hostId: string;
  roleId: string | null;
  vcpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  netInKBps: number;
  netOutKBps: number;
}

export interface PlacementRequest {
  roleId: string | null;
  vcpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  netInKBps: number;
  netOutKBps: number;
}

export interface PlacementOptions {
  /** Memory kept for the host OS and libvirt, MiB. */
  hostReserveMiB: number;
}

export const DEFAULT_PLACEMENT: PlacementOptions = { hostReserveMiB: 1024 };

export interface HostUsage {
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  netKBps: number;
  guests: number;
}

export interface HostCapacityView {
  total: HostUsage;
  used: HostUsage;
  free: HostUsage;
}

const guestNet = (g: { netInKBps: number; netOutKBps: number }) => Math.max(g.netInKBps, g.netOutKBps);

/** What a host offers and what its guests take. */
export function hostCapacity(
  h: PlacementHost,
  guests: readonly PlacementGuest[],
  opts: PlacementOptions = DEFAULT_PLACEMENT,
): HostCapacityView {
  const total: HostUsage = {
    cpuMhz: h.cpus * h.cpuMhz,
    memoryMiB: Math.max(0, h.memoryMiB - opts.hostReserveMiB),
    diskBytes: h.diskBytes,
    netKBps: h.netKBps,
    guests: 0,
  };
  const used: HostUsage = { cpuMhz: 0, memoryMiB: 0, diskBytes: 0, netKBps: 0, guests: 0 };
  for (const g of guests) {
    if (g.hostId !== h.id) continue;
    used.cpuMhz += g.vcpus * g.cpuMhz;
    used.memoryMiB += memoryHardLimitMiB(g.memoryMiB, h.kvm);
    used.diskBytes += g.diskBytes;
    used.netKBps += guestNet(g);
    used.guests += 1;
  }
  const free: HostUsage = {
    cpuMhz: total.cpuMhz - used.cpuMhz,
    memoryMiB: total.memoryMiB - used.memoryMiB,
    diskBytes: total.diskBytes - used.diskBytes,
    netKBps: total.netKBps - used.netKBps,
    guests: 0,
  };
  return { total, used, free };
}

/** Why a host cannot take the request; empty when it can. */
export function refusals(
  h: PlacementHost,
  guests: readonly PlacementGuest[],
  req: PlacementRequest,
  opts: PlacementOptions = DEFAULT_PLACEMENT,
): string[] {
  const why: string[] = [];
  if (h.state !== "ready") return [`host is ${h.state}`];
  if (h.cpus <= 0 || h.cpuMhz <= 0) return ["host reported no CPU capacity"];
  if (req.vcpus > h.cpus) why.push(`needs ${req.vcpus} vCPUs, host has ${h.cpus} cores`);
  if (req.cpuMhz > h.cpuMhz) why.push(`a vCPU of ${req.cpuMhz} MHz is faster than its ${h.cpuMhz} MHz cores`);
  const { free } = hostCapacity(h, guests, opts);
  const cpu = req.vcpus * req.cpuMhz;
  if (cpu > free.cpuMhz) why.push(`CPU: needs ${cpu} MHz, ${Math.max(0, free.cpuMhz)} MHz free`);
  const mem = memoryHardLimitMiB(req.memoryMiB, h.kvm);
  if (mem > free.memoryMiB)
    why.push(`memory: needs ${mem} MiB (with QEMU overhead), ${Math.max(0, free.memoryMiB)} MiB free`);
  if (req.diskBytes > free.diskBytes)
    why.push(`disk: needs ${req.diskBytes} bytes, ${Math.max(0, free.diskBytes)} bytes free`);
  const net = guestNet(req);
  if (net > free.netKBps) why.push(`network: needs ${net} KB/s, ${Math.max(0, free.netKBps)} KB/s free`);
  return why;
}

/** Chooses a host for one guest, or throws a 409 listing why each host was refused. */
export function placeOne(
  hosts: readonly PlacementHost[],
  guests: readonly PlacementGuest[],
  req: PlacementRequest,
  opts: PlacementOptions = DEFAULT_PLACEMENT,
): PlacementHost {
  const refused: { host: string; reasons: string[] }[] = [];
  const fits: { h: PlacementHost; sameRole: number; freeMem: number }[] = [];
  for (const h of hosts) {
    const why = refusals(h, guests, req, opts);
    if (why.length) {
      refused.push({ host: h.name, reasons: why });
      continue;
    }
    const sameRole =
      req.roleId === null ? 0 : guests.filter((g) => g.hostId === h.id && g.roleId === req.roleId).length;
    fits.push({ h, sameRole, freeMem: hostCapacity(h, guests, opts).free.memoryMiB });
  }
  fits.sort((a, b) => a.sameRole - b.sameRole || b.freeMem - a.freeMem || (a.h.id < b.h.id ? -1 : 1));
  const best = fits[0];
  if (best) return best.h;
  const list = hosts.length
    ? refused.map((r) => `${r.host}: ${r.reasons.join("; ")}`).join(" | ")
    : "there are no hosts";
  throw new WeftError("conflict", "NO_CAPACITY", `no host can take this guest: ${list}`, {
    details: { refused },
  });
}

/**
 * Places `count` guests one after another, each seeing the ones placed before it. All or
 * nothing: throws when one of them fits nowhere.
 */
export function placeMany(
  hosts: readonly PlacementHost[],
  guests: readonly PlacementGuest[],
  req: PlacementRequest,
  count: number,
  opts: PlacementOptions = DEFAULT_PLACEMENT,
): PlacementHost[] {
  const seen = [...guests];
  const out: PlacementHost[] = [];
  for (let i = 0; i < count; i++) {
    const h = placeOne(hosts, seen, req, opts);
    out.push(h);
    seen.push({ ...req, hostId: h.id });
  }
  return out;
}
