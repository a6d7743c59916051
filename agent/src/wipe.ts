// wipe: make disks blank again when a machine is released. For each disk: `wipefs -a` on every
// partition and then on the disk (file system, RAID and LVM signatures), `sgdisk --zap-all`
// (both GPT copies and the protective MBR), then zero the first and last MiB ourselves so
// that nothing boots from it even where wipefs is missing. A reboot is a separate command.
import { join } from "node:path";
import type { CommandContext, CommandOutcome } from "./context.js";
import { listDisks, mountedDevices, readDisk, type BlockDisk } from "./disks.js";
import { AgentError, isAgentError } from "./errors.js";
import { zeroRange } from "./partition.js";

const MIB = 1 << 20;

async function wipefs(ctx: CommandContext, path: string): Promise<boolean> {
  try {
    await ctx.exec.run("wipefs", ["-a", path]);
    return true;
  } catch (err) {
    if (isAgentError(err, "EXEC_NOT_FOUND")) return false;
    throw err;
  }
}

/** Zeroes the first and last MiB of a device of `size` bytes. */
async function zeroEnds(path: string, size: number): Promise<void> {
  await zeroRange(path, 0, Math.min(MIB, size));
  if (size > MIB) await zeroRange(path, Math.max(MIB, size - MIB), Math.min(MIB, size - MIB));
}

export async function wipeDisks(
  params: { disks: string[] | null },
  ctx: CommandContext,
): Promise<CommandOutcome> {
  const s = ctx.disks;
  const mounted = await mountedDevices(s.root);
  let targets: BlockDisk[];
  if (params.disks === null) {
    targets = (await listDisks(s.root)).filter((d) => !d.removable && !d.readOnly);
  } else {
    targets = [];
    for (const name of params.disks) {
      if (!/^[A-Za-z0-9._-]+$/.test(name)) {
        throw new AgentError(
          "invalid_request",
          "DISK_INVALID",
          `not a kernel disk name: ${JSON.stringify(name)}`,
        );
      }
      const d = await readDisk(s.root, name);
      if (!d) throw new AgentError("device", "DISK_NOT_FOUND", `disk ${name} is not in /sys/block`);
      targets.push(d);
    }
  }
  for (const d of targets) {
    if (mounted.has(d.name) || d.partitions.some((p) => mounted.has(p.name))) {
      throw new AgentError("device", "DISK_BUSY", `disk ${d.name} has a mounted file system; not wiping it`);
    }
  }
  let noWipefs = false;
  for (const [i, d] of targets.entries()) {
    ctx.progress({ stage: "wipe", progress: i / targets.length, message: `wiping ${d.name}` });
    const diskPath = join(s.devDir, d.name);
    for (const p of d.partitions) {
      const partPath = join(s.devDir, p.name);
      if (!(await wipefs(ctx, partPath))) {
        noWipefs = true;
        await zeroEnds(partPath, p.sizeBytes);
      }
    }
    if (!(await wipefs(ctx, diskPath))) noWipefs = true;
    await ctx.exec.run("sgdisk", ["--zap-all", diskPath]);
    await zeroEnds(diskPath, d.sizeBytes);
    ctx.log.info("wipe: disk wiped", { disk: d.name, partitions: d.partitions.length });
  }
  if (noWipefs)
    ctx.log.warn("wipefs is not installed; partitions were cleared by zeroing their first and last MiB");
  await ctx.exec.run("sync", []);
  ctx.progress({ stage: "wipe", progress: 1 });
  return { message: `wiped ${targets.map((d) => d.name).join(", ") || "no disks"}` };
}
