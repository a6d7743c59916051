// What a command handler (install-host, wipe, reboot) receives: the exec door, time, HTTP,
// where the machine's /sys and /dev are, and a way to report progress. Handlers never read
// the agent's configuration or the environment.
import type { Clock } from "./clock.js";
import type { Fetch } from "./client.js";
import type { Exec } from "./exec.js";
import type { Logger } from "./log.js";

export interface DiskSettings {
  /** Root of /sys and /proc ("/" on a machine, a fixture tree in tests). */
  root: string;
  /** Where device nodes live. */
  devDir: string;
  /** syslinux's GPT MBR boot code, written to the first 440 bytes of the disk. */
  gptmbrPath: string;
  /** Directory under which the new root file system is mounted. */
  mountBase: string;
  /** How long to wait for a new partition's device node. */
  partitionWaitMs: number;
  /** Commands that make the kernel re-read a partition table, tried in order. */
  rescanCommands: readonly (readonly string[])[];
}

export const DEFAULT_DISK_SETTINGS: DiskSettings = {
  root: "/",
  devDir: "/dev",
  gptmbrPath: "/usr/lib/syslinux/mbr/gptmbr.bin",
  mountBase: "/run/weft",
  partitionWaitMs: 15_000,
  rescanCommands: [
    ["blockdev", "--rereadpt"],
    ["partx", "-a"],
  ],
};

export interface ProgressUpdate {
  stage: string;
  /** 0..1 for the whole command. */
  progress?: number;
  message?: string;
}

export interface CommandContext {
  exec: Exec;
  log: Logger;
  clock: Clock;
  fetch: Fetch;
  disks: DiskSettings;
  firmware: "bios" | "uefi";
  /** Queues a RUNNING report; reports leave in the order they were queued. */
  progress(update: ProgressUpdate): void;
}

export interface CommandOutcome {
  message: string;
  /** Something to do once SUCCEEDED has been reported. */
  then?: "reboot";
}
