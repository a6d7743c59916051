// Hardware inventory from a root directory (`/` on the machine; fixture trees in tests):
// firmware, SMBIOS identity, CPUs, memory, disks, NICs and the kernel release, in the shape
// of the wire contract's Inventory.
import { networkInterfaces } from "node:os";
import type { Inventory } from "@weft/wire";
import { z } from "zod";
import { listDisks } from "./disks.js";
import { AgentError } from "./errors.js";
import type { Exec } from "./exec.js";
import type { Logger } from "./log.js";
import { exists, list, meaningful, readInt, readText } from "./sysfs.js";

/** Addresses per interface name, in CIDR form. */
export type AddressMap = Map<string, string[]>;

export interface CpuInfo {
  count: number;
  model: string | null;
  mhz: number | null;
}

export function parseCpuinfo(text: string): CpuInfo {
  let count = 0;
  let model: string | null = null;
  let mhz: number | null = null;
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const key = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    if (key === "processor") count++;
    else if (key === "model name" && model === null) model = value || null;
    else if (key === "cpu MHz" && mhz === null) {
      const n = Number(value);
      if (Number.isFinite(n) && n > 0) mhz = Math.round(n * 1000) / 1000;
    }
  }
  return { count, model, mhz };
}

/** MemTotal in bytes. */
export function parseMeminfo(text: string): number | null {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(text);
  return m?.[1] === undefined ? null : Number(m[1]) * 1024;
}

const IpAddr = z.array(
  z.object({
    ifname: z.string(),
    addr_info: z
      .array(
        z.object({
          family: z.string(),
          local: z.string(),
          prefixlen: z.number(),
          scope: z.string().optional(),
        }),
      )
      .default([]),
  }),
);

/** Parses `ip -j addr` output; link-local IPv6 addresses are left out. */
export function parseIpAddrJson(text: string): AddressMap {
  const r = IpAddr.safeParse(JSON.parse(text));
  if (!r.success)
    throw new AgentError("exec", "IP_OUTPUT_INVALID", `ip -j addr: ${z.prettifyError(r.error)}`);
  const out: AddressMap = new Map();
  for (const l of r.data) {
    out.set(
      l.ifname,
      l.addr_info
        .filter((a) => a.scope !== "link" || a.family === "inet")
        .map((a) => `${a.local}/${a.prefixlen}`),
    );
  }
  return out;
}

/** The same from Node's own view, for systems whose `ip` has no JSON output (busybox). */
export function nodeAddresses(): AddressMap {
  const out: AddressMap = new Map();
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    out.set(
      name,
      (addrs ?? [])
        .filter((a) => !(a.family === "IPv6" && a.address.startsWith("fe80:")))
        .map((a) => a.cidr ?? a.address),
    );
  }
  return out;
}

/** `ip -j addr` through the exec door; falls back to Node's view when that fails. */
export async function collectAddresses(exec: Exec, log: Logger): Promise<AddressMap> {
  try {
    const r = await exec.run("ip", ["-j", "addr"]);
    return parseIpAddrJson(r.stdout);
  } catch (err) {
    log.warn("ip -j addr failed; using Node's interface list", { error: (err as Error).message });
    return nodeAddresses();
  }
}

export async function collectNics(root: string, addresses: AddressMap): Promise<Inventory["nics"]> {
  const nics: Inventory["nics"] = [];
  for (const name of await list(root, "sys/class/net")) {
    if (name === "lo") continue;
    const base = `sys/class/net/${name}`;
    // Only interfaces backed by a device: bridges, tap and veth interfaces are not hardware.
    if (!(await exists(root, `${base}/device`))) continue;
    const mac = (await readText(root, `${base}/address`))?.toLowerCase() ?? "";
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) continue;
    const speed = await readInt(root, `${base}/speed`);
    nics.push({
      name,
      mac,
      addresses: addresses.get(name) ?? [],
      speedMbps: speed !== null && speed > 0 ? speed : null,
    });
  }
  return nics;
}

export async function collectCpu(root: string): Promise<CpuInfo> {
  const cpu = parseCpuinfo((await readText(root, "proc/cpuinfo")) ?? "");
  if (cpu.count === 0)
    throw new AgentError("internal", "INVENTORY_INCOMPLETE", "no processor in /proc/cpuinfo");
  return cpu;
}

export async function collectMemoryBytes(root: string): Promise<number> {
  const mem = parseMeminfo((await readText(root, "proc/meminfo")) ?? "");
  if (mem === null || mem <= 0)
    throw new AgentError("internal", "INVENTORY_INCOMPLETE", "no MemTotal in /proc/meminfo");
  return mem;
}

export async function detectFirmware(root: string): Promise<"bios" | "uefi"> {
  return (await exists(root, "sys/firmware/efi")) ? "uefi" : "bios";
}

export interface InventoryOptions {
  root: string;
  addresses: AddressMap;
}

export async function collectInventory(opts: InventoryOptions): Promise<Inventory> {
  const { root } = opts;
  const dmi = (f: string): Promise<string | null> => readText(root, `sys/class/dmi/id/${f}`).then(meaningful);
  const disks = await listDisks(root);
  return {
    firmware: await detectFirmware(root),
    system: {
      uuid: (await dmi("product_uuid"))?.toLowerCase() ?? null,
      serial: await dmi("product_serial"),
      vendor: await dmi("sys_vendor"),
      product: await dmi("product_name"),
    },
    cpu: await collectCpu(root),
    memoryBytes: await collectMemoryBytes(root),
    disks: disks.map((d) => ({
      name: d.name,
      sizeBytes: d.sizeBytes,
      model: d.model,
      serial: d.serial,
      rotational: d.rotational,
    })),
    nics: await collectNics(root, opts.addresses),
    kernel: await readText(root, "proc/sys/kernel/osrelease"),
  };
}
