// A guest's resource caps: what an operator writes (`--cpu 1.6GHz --memory 1.7GiB --net 100Mbit
// --disk 250GB`), what the store keeps (integers in fixed units), and what libvirt is given.
// Pure: no I/O.
//
// Units kept (the Guest columns): cpuMhz per vCPU, memoryMiB, diskBytes, diskIops, diskBps
// (bytes/s), netInKBps/netOutKBps (kilobytes/s, 1 KB = 1000 bytes, as libvirt's <bandwidth>).
//
// CPU share. A guest's CPU is a clock equivalent: "1.6 GHz" on a host whose cores run at
// 2.4 GHz is two thirds of one core per vCPU. libvirt's <cputune><quota> applies to each vCPU
// thread, so with period P:
//
//     quota = floor(P × cpuMhz / hostCoreMhz)        (per vCPU, P = 100000 µs)
//
// 1.6 GHz on a 2.4 GHz core gives 66666. A vCPU cannot be faster than a core: cpuMhz above the
// host's clock is refused by placement, and the quota is never above P. libvirt refuses a
// quota below 1000 µs, so shares are clamped to that floor.
import { z } from "zod";
import { invalid } from "../errors.js";

export const CPU_PERIOD_US = 100_000;
const MIN_QUOTA_US = 1_000;

/** The "small instance" every unspecified cap falls back to. */
export const DEFAULT_SPEC = {
  vcpus: 1,
  cpuMhz: 1600,
  memoryMiB: 1741, // 1.7 GiB, rounded up to whole MiB
  netInKBps: 12_500, // 100 Mbit/s
  netOutKBps: 12_500,
  diskBytes: 250_000_000_000, // 250 GB, sparse
} as const;

/** Bounds outside which a cap is a mistake rather than a wish. */
export const LIMITS = {
  vcpus: { min: 1, max: 64 },
  cpuMhz: { min: 100, max: 10_000 },
  memoryMiB: { min: 64, max: 1024 * 1024 },
  diskBytes: { min: 1_073_741_824, max: 64 * 2 ** 40 },
  diskIops: { min: 10, max: 1_000_000 },
  diskBps: { min: 1_000_000, max: 100_000_000_000 },
  netKBps: { min: 125, max: 12_500_000 }, // 1 Mbit/s .. 100 Gbit/s
  ports: { max: 16 },
} as const;

type UnitTable = Record<string, number>;

const CLOCK: UnitTable = { hz: 1e-6, khz: 1e-3, mhz: 1, ghz: 1000 };
const BYTES: UnitTable = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};
// Rates in bytes per second. Bits: bit, kbit, mbit, gbit (also "bps" forms); bytes: B/s, MB/s...
const RATE: UnitTable = {
  bit: 1 / 8,
  bps: 1 / 8,
  kbit: 1e3 / 8,
  kbps: 1e3 / 8,
  mbit: 1e6 / 8,
  mbps: 1e6 / 8,
  gbit: 1e9 / 8,
  gbps: 1e9 / 8,
  "b/s": 1,
  "kb/s": 1e3,
  "mb/s": 1e6,
  "gb/s": 1e9,
  "kib/s": 2 ** 10,
  "mib/s": 2 ** 20,
  "gib/s": 2 ** 30,
};

const QUANTITY = /^\s*(\d+(?:\.\d+)?)\s*([a-z/]*)\s*$/i;

/**
 * Parses "1.6GHz", "1.7 GiB", "100Mbit" into a number of `base` units. A bare number is taken
 * in `bareUnit`. Throws a 400 naming the field and the accepted units.
 */
export function parseQuantity(field: string, text: string, units: UnitTable, bareUnit: string): number {
  const m = QUANTITY.exec(text);
  if (!m) throw invalid("SPEC_INVALID", `${field}: "${text}" is not a quantity such as 1.6GHz`);
  const unit = (m[2] || bareUnit).toLowerCase();
  const factor = units[unit];
  if (factor === undefined) {
    throw invalid(
      "SPEC_INVALID",
      `${field}: unknown unit "${m[2]}"; use one of ${Object.keys(units).join(", ")}`,
    );
  }
  return Number(m[1]) * factor;
}

export const parseClockMhz = (field: string, t: string) => parseQuantity(field, t, CLOCK, "mhz");
export const parseBytes = (field: string, t: string) => parseQuantity(field, t, BYTES, "b");
/** A rate in kilobytes per second (libvirt's <bandwidth> unit). */
export const parseRateKBps = (field: string, t: string) => parseQuantity(field, t, RATE, "b/s") / 1000;
export const parseRateBps = (field: string, t: string) => parseQuantity(field, t, RATE, "b/s");

/** Either a number in the field's stored unit or a string with units. */
const Quantity = z.union([z.number(), z.string().max(32)]);

export const PortSpec = z.strictObject({
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(["tcp", "udp"]).default("tcp"),
});
export type PortSpec = z.infer<typeof PortSpec>;

/** What an API client may send: every cap optional, numbers in stored units or strings with units. */
export const GuestSpecInput = z.strictObject({
  image: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "an image name"),
  vcpus: z.number().optional(),
  cpu: Quantity.optional(),
  memory: Quantity.optional(),
  disk: Quantity.optional(),
  diskIops: Quantity.optional(),
  diskBps: Quantity.optional(),
  net: Quantity.optional(),
  netIn: Quantity.optional(),
  netOut: Quantity.optional(),
  ports: z.array(PortSpec).max(LIMITS.ports.max).optional(),
});
export type GuestSpecInput = z.input<typeof GuestSpecInput>;

/** The normalised spec, as kept in Role.spec and copied onto each Guest row. */
export const GuestSpec = z.strictObject({
  image: z.string(),
  vcpus: z.number().int(),
  cpuMhz: z.number().int(),
  memoryMiB: z.number().int(),
  diskBytes: z.number().int(),
  diskIops: z.number().int().nullable(),
  diskBps: z.number().int().nullable(),
  netInKBps: z.number().int(),
  netOutKBps: z.number().int(),
  ports: z.array(PortSpec),
});
export type GuestSpec = z.infer<typeof GuestSpec>;

function bounded(
  field: string,
  value: number,
  min: number,
  max: number,
  show: (n: number) => string,
): number {
  if (!Number.isFinite(value) || value <= 0)
    throw invalid("SPEC_INVALID", `${field} must be positive, got ${value}`);
  if (value < min || value > max) {
    throw invalid("SPEC_OUT_OF_RANGE", `${field} ${show(value)} is outside ${show(min)}..${show(max)}`, {
      field,
      value,
      min,
      max,
    });
  }
  return value;
}

const showMhz = (n: number) => (n >= 1000 ? `${n / 1000} GHz` : `${n} MHz`);
const showMiB = (n: number) => (n >= 1024 ? `${+(n / 1024).toFixed(2)} GiB` : `${n} MiB`);
const showBytes = (n: number) => `${+(n / 1e9).toFixed(3)} GB`;
const showKBps = (n: number) => `${+((n * 8) / 1000).toFixed(3)} Mbit/s`;

function quantity(
  field: string,
  v: number | string | undefined,
  parse: (f: string, t: string) => number,
): number | undefined {
  if (v === undefined) return undefined;
  return typeof v === "number" ? v : parse(field, v);
}

/**
 * Normalises an input spec: units parsed, defaults filled in, every cap checked. Throws a 400
 * (WeftError) naming the first bad field.
 */
export function normalizeSpec(input: GuestSpecInput): GuestSpec {
  const parsed = GuestSpecInput.safeParse(input);
  if (!parsed.success) {
    throw invalid(
      "SPEC_INVALID",
      "invalid guest spec",
      parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    );
  }
  const s = parsed.data;
  const vcpus = s.vcpus ?? DEFAULT_SPEC.vcpus;
  if (!Number.isInteger(vcpus)) throw invalid("SPEC_INVALID", `vcpus must be a whole number, got ${vcpus}`);
  bounded("vcpus", vcpus, LIMITS.vcpus.min, LIMITS.vcpus.max, String);

  const cpuMhz = Math.round(quantity("cpu", s.cpu, parseClockMhz) ?? DEFAULT_SPEC.cpuMhz);
  bounded("cpu", cpuMhz, LIMITS.cpuMhz.min, LIMITS.cpuMhz.max, showMhz);

  const memBytes = quantity("memory", s.memory, parseBytes);
  // A bare number is MiB (the stored unit); a string with units is converted, rounded up.
  const memoryMiB =
    s.memory === undefined
      ? DEFAULT_SPEC.memoryMiB
      : typeof s.memory === "number"
        ? s.memory
        : Math.ceil((memBytes ?? 0) / 2 ** 20);
  bounded("memory", memoryMiB, LIMITS.memoryMiB.min, LIMITS.memoryMiB.max, showMiB);
  if (!Number.isInteger(memoryMiB)) throw invalid("SPEC_INVALID", "memory in MiB must be a whole number");

  const diskBytes = Math.round(quantity("disk", s.disk, parseBytes) ?? DEFAULT_SPEC.diskBytes);
  bounded("disk", diskBytes, LIMITS.diskBytes.min, LIMITS.diskBytes.max, showBytes);

  const iops = quantity("diskIops", s.diskIops, (f, t) =>
    parseQuantity(f, t, { "": 1, iops: 1, k: 1e3 }, ""),
  );
  const diskIops = iops === undefined ? null : Math.round(iops);
  if (diskIops !== null) bounded("diskIops", diskIops, LIMITS.diskIops.min, LIMITS.diskIops.max, String);

  const bps = quantity("diskBps", s.diskBps, parseRateBps);
  const diskBps = bps === undefined ? null : Math.round(bps);
  if (diskBps !== null)
    bounded("diskBps", diskBps, LIMITS.diskBps.min, LIMITS.diskBps.max, (n) => `${n / 1e6} MB/s`);

  const both = quantity("net", s.net, parseRateKBps);
  const netInKBps = Math.round(quantity("netIn", s.netIn, parseRateKBps) ?? both ?? DEFAULT_SPEC.netInKBps);
  const netOutKBps = Math.round(
    quantity("netOut", s.netOut, parseRateKBps) ?? both ?? DEFAULT_SPEC.netOutKBps,
  );
  bounded("netIn", netInKBps, LIMITS.netKBps.min, LIMITS.netKBps.max, showKBps);
  bounded("netOut", netOutKBps, LIMITS.netKBps.min, LIMITS.netKBps.max, showKBps);

  const ports = s.ports ?? [{ port: 80, protocol: "tcp" as const }];
  const seen = new Set<string>();
  for (const p of ports) {
    const k = `${p.protocol}/${p.port}`;
    if (seen.has(k)) throw invalid("SPEC_INVALID", `port ${k} listed twice`);
    seen.add(k);
  }

  return {
    image: s.image,
    vcpus,
    cpuMhz,
    memoryMiB,
    diskBytes,
    diskIops,
    diskBps,
    netInKBps,
    netOutKBps,
    ports,
  };
}

/** libvirt's per-vCPU CFS quota for a share of `cpuMhz` on cores of `hostCoreMhz`. */
export function cpuQuota(cpuMhz: number, hostCoreMhz: number): { period: number; quota: number } {
  if (!(hostCoreMhz > 0)) throw invalid("HOST_CLOCK_UNKNOWN", "the host reported no CPU clock");
  const quota = Math.floor((CPU_PERIOD_US * cpuMhz) / hostCoreMhz);
  return { period: CPU_PERIOD_US, quota: Math.min(CPU_PERIOD_US, Math.max(MIN_QUOTA_US, quota)) };
}

/**
 * QEMU's own memory beside the guest's RAM, included in <memtune><hard_limit> (a hard limit at
 * exactly the guest's RAM gets QEMU killed). Under TCG the translation cache is capped by
 * <tcg><tb-cache> in the domain XML and counted here.
 */
export const QEMU_OVERHEAD_MIB = 256;
export const TCG_TB_CACHE_MIB = 128;

/** The hard memory limit of a guest's QEMU process, in MiB; placement reserves this much. */
export function memoryHardLimitMiB(memoryMiB: number, kvm: boolean): number {
  return memoryMiB + QEMU_OVERHEAD_MIB + (kvm ? 0 : TCG_TB_CACHE_MIB);
}

/** Human form of a stored spec, for tables. */
export function describeSpec(s: {
  vcpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  netInKBps: number;
}): string {
  return `${s.vcpus}×${showMhz(s.cpuMhz)}, ${showMiB(s.memoryMiB)}, ${showBytes(s.diskBytes)}, ${showKBps(s.netInKBps)}`;
}
