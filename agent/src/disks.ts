// Block devices from /sys/block: whole disks with their partitions, and the choice of the
// disk a host is installed on.
import { AgentError } from "./errors.js";
import { list, meaningful, readInt, readText } from "./sysfs.js";

export interface Partition {
  name: string;
  number: number;
  startSector: number;
  sizeBytes: number;
}

export interface BlockDisk {
  name: string;
  sizeBytes: number;
  model: string | null;
  serial: string | null;
  rotational: boolean | null;
  removable: boolean;
  readOnly: boolean;
  partitions: Partition[];
}

/** Kernel names that are never machine disks (loop, RAM disks, optical drives, zram, floppies). */
export const IGNORED_DISK = /^(loop|ram|sr|zram|fd)\d/;

/** /sys/block/<name>/size is always in 512-byte sectors, whatever the logical block size. */
const SECTOR = 512;

export async function readDisk(root: string, name: string): Promise<BlockDisk | null> {
  const base = `sys/block/${name}`;
  const sectors = await readInt(root, `${base}/size`);
  if (sectors === null) return null;
  const model = meaningful(await readText(root, `${base}/device/model`));
  const serial = meaningful(
    (await readText(root, `${base}/serial`)) ?? (await readText(root, `${base}/device/serial`)),
  );
  const rot = await readInt(root, `${base}/queue/rotational`);
  const partitions: Partition[] = [];
  for (const entry of await list(root, base)) {
    if (!entry.startsWith(name)) continue;
    const number = await readInt(root, `${base}/${entry}/partition`);
    if (number === null) continue;
    partitions.push({
      name: entry,
      number,
      startSector: (await readInt(root, `${base}/${entry}/start`)) ?? 0,
      sizeBytes: ((await readInt(root, `${base}/${entry}/size`)) ?? 0) * SECTOR,
    });
  }
  partitions.sort((a, b) => a.number - b.number);
  return {
    name,
    sizeBytes: sectors * SECTOR,
    model,
    serial,
    rotational: rot === null ? null : rot === 1,
    removable: (await readInt(root, `${base}/removable`)) === 1,
    readOnly: (await readInt(root, `${base}/ro`)) === 1,
    partitions,
  };
}

/** Machine disks, in kernel name order, without loop/ram/sr/zram devices. */
export async function listDisks(root: string): Promise<BlockDisk[]> {
  const out: BlockDisk[] = [];
  for (const name of await list(root, "sys/block")) {
    if (IGNORED_DISK.test(name)) continue;
    const d = await readDisk(root, name);
    if (d && d.sizeBytes > 0) out.push(d);
  }
  return out;
}

/** Devices named in /proc/mounts (the boot media, if any, is mounted). */
export async function mountedDevices(root: string): Promise<Set<string>> {
  const text = (await readText(root, "proc/mounts")) ?? "";
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const dev = line.split(" ")[0] ?? "";
    if (dev.startsWith("/dev/")) out.add(dev.slice(5));
  }
  return out;
}

/**
 * The install target: the named disk, or else the first non-removable, writable disk none of
 * whose partitions is mounted (that would be the media we booted from) and that can hold
 * `minBytes`.
 */
export async function selectDisk(root: string, wanted: string | null, minBytes: number): Promise<BlockDisk> {
  if (wanted !== null) {
    if (!/^[A-Za-z0-9._-]+$/.test(wanted)) {
      throw new AgentError(
        "invalid_request",
        "DISK_INVALID",
        `not a kernel disk name: ${JSON.stringify(wanted)}`,
      );
    }
    const d = await readDisk(root, wanted);
    if (!d) throw new AgentError("device", "DISK_NOT_FOUND", `disk ${wanted} is not in /sys/block`);
    if (d.readOnly) throw new AgentError("device", "DISK_READ_ONLY", `disk ${wanted} is read-only`);
    const mounted = await mountedDevices(root);
    if (mounted.has(d.name) || d.partitions.some((p) => mounted.has(p.name))) {
      throw new AgentError("device", "DISK_BUSY", `disk ${wanted} has a mounted file system`);
    }
    if (d.sizeBytes < minBytes) {
      throw new AgentError(
        "device",
        "DISK_TOO_SMALL",
        `disk ${wanted} holds ${d.sizeBytes} bytes, need ${minBytes}`,
        {
          details: { disk: wanted, sizeBytes: d.sizeBytes, minBytes },
        },
      );
    }
    return d;
  }
  const mounted = await mountedDevices(root);
  const disks = await listDisks(root);
  const skipped: Record<string, string> = {};
  for (const d of disks) {
    if (d.removable) skipped[d.name] = "removable";
    else if (d.readOnly) skipped[d.name] = "read-only";
    else if (mounted.has(d.name) || d.partitions.some((p) => mounted.has(p.name)))
      skipped[d.name] = "mounted (boot media)";
    else if (d.sizeBytes < minBytes) skipped[d.name] = "too small";
    else return d;
  }
  throw new AgentError("device", "NO_TARGET_DISK", "no disk to install on", { details: { skipped } });
}
