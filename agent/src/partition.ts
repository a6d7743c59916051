// Partition tables through sgdisk, and waiting for the kernel to show a new partition.
import { access, open } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "./clock.js";
import type { DiskSettings } from "./context.js";
import { readDisk, type Partition } from "./disks.js";
import { AgentError, isAgentError } from "./errors.js";
import type { Exec } from "./exec.js";
import type { Logger } from "./log.js";

export const ROOT_PARTITION_LABEL = "weft-root";
/** First sector of partition 1: 1 MiB, the usual alignment. */
export const FIRST_SECTOR = 2048;

/** The sgdisk argument lists that lay out a host disk: one Linux partition, legacy-BIOS-bootable. */
export function hostLayoutCommands(diskPath: string): string[][] {
  return [
    ["-Z", diskPath],
    [
      "-n",
      `1:${FIRST_SECTOR}:0`,
      "-t",
      "1:8300",
      "-A",
      "1:set:2",
      "-c",
      `1:${ROOT_PARTITION_LABEL}`,
      diskPath,
    ],
  ];
}

/** `Partition unique GUID: 0FC63DAF-...` from `sgdisk -i N`. */
export function parsePartitionGuid(sgdiskInfo: string): string | null {
  const m = /^Partition unique GUID:\s*([0-9A-Fa-f-]{36})\s*$/m.exec(sgdiskInfo);
  return m?.[1]?.toLowerCase() ?? null;
}

const existsPath = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

/**
 * Waits until partition `number` of `disk` shows in /sys and its device node exists. sgdisk
 * already asks the kernel to re-read the table; when the partition does not show, the
 * configured rescan commands are tried in turn (a missing tool is skipped).
 */
export async function waitForPartition(
  disk: string,
  number: number,
  s: DiskSettings,
  exec: Exec,
  clock: Clock,
  log: Logger,
): Promise<Partition & { path: string }> {
  const find = async (): Promise<(Partition & { path: string }) | null> => {
    const d = await readDisk(s.root, disk);
    const p = d?.partitions.find((x) => x.number === number);
    if (!p) return null;
    const path = join(s.devDir, p.name);
    return (await existsPath(path)) ? { ...p, path } : null;
  };
  const deadline = clock.now() + s.partitionWaitMs;
  const rescans = [...s.rescanCommands];
  let nextRescan = clock.now();
  for (;;) {
    const found = await find();
    if (found) return found;
    if (clock.now() >= deadline) break;
    if (clock.now() >= nextRescan && rescans.length > 0) {
      const [cmd, ...args] = rescans.shift() ?? [];
      if (cmd !== undefined) {
        try {
          await exec.run(cmd, [...args, join(s.devDir, disk)]);
        } catch (err) {
          if (!isAgentError(err) || err.type !== "exec") throw err;
          log.warn("partition rescan failed", { cmd, error: err.message });
        }
      }
      nextRescan = clock.now() + Math.min(1000, s.partitionWaitMs / 3);
    }
    await clock.sleep(100);
  }
  throw new AgentError("device", "PARTITION_NOT_FOUND", `partition ${number} of ${disk} did not appear`, {
    details: { disk, number, waitedMs: s.partitionWaitMs },
  });
}

/** Writes `data` at byte `offset` of a device or file. */
export async function writeAt(path: string, data: Uint8Array, offset: number): Promise<void> {
  const fh = await open(path, "r+");
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Zeroes `length` bytes at `offset` (clamped to the device). */
export async function zeroRange(path: string, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  await writeAt(path, new Uint8Array(length), offset);
}
