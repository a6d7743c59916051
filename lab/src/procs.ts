// Processes the lab starts are recorded as (pid, start time) and stopped by PID only: the
// start time from /proc tells a live daemon from an unrelated process that reused its PID.
import { readFileSync, readdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export interface ProcessRecord {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks since boot when the process started. */
  startTime: string;
  /** What it is, for messages ("libvirtd", "virtlogd", ...). */
  cmd: string;
}

interface ProcInfo {
  state: string;
  startTime: string;
  argv: string[];
}

export function readProc(pid: number, procRoot = "/proc"): ProcInfo | undefined {
  try {
    const stat = readFileSync(`${procRoot}/${pid}/stat`, "utf8");
    // "pid (comm) state ..." - comm may hold spaces and parentheses, so cut at the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const state = rest[0] ?? "?";
    const startTime = rest[19] ?? "";
    let argv: string[] = [];
    try {
      argv = readFileSync(`${procRoot}/${pid}/cmdline`, "utf8")
        .split("\0")
        .filter((a) => a !== "");
    } catch {
      // a process may end between the two reads
    }
    return { state, startTime, argv };
  } catch {
    return undefined;
  }
}

/** Alive and still the same process (zombies count as ended). */
export function isRunning(rec: ProcessRecord, procRoot = "/proc"): boolean {
  const p = readProc(rec.pid, procRoot);
  return p !== undefined && p.state !== "Z" && p.state !== "X" && p.startTime === rec.startTime;
}

export function recordProcess(pid: number, cmd: string, procRoot = "/proc"): ProcessRecord | undefined {
  const p = readProc(pid, procRoot);
  if (p === undefined || p.state === "Z") return undefined;
  return { pid, startTime: p.startTime, cmd };
}

/** SIGTERM, then SIGKILL after timeoutMs. Returns whether the process was running. */
export async function stopProcess(rec: ProcessRecord, timeoutMs = 10_000): Promise<boolean> {
  if (!isRunning(rec)) return false;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(rec.pid, sig);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isRunning(rec)) return true;
    await sleep(100);
  }
  signal("SIGKILL");
  const killDeadline = Date.now() + 5_000;
  while (Date.now() < killDeadline && isRunning(rec)) await sleep(100);
  return true;
}

/** Running processes whose command line satisfies the predicate (used to find VMs left by a crashed daemon). */
export function findProcesses(match: (argv: string[]) => boolean, procRoot = "/proc"): ProcessRecord[] {
  const found: ProcessRecord[] = [];
  for (const entry of readdirSync(procRoot)) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const p = readProc(pid, procRoot);
    if (p === undefined || p.state === "Z" || !match(p.argv)) continue;
    found.push({ pid, startTime: p.startTime, cmd: p.argv[0] ?? "?" });
  }
  return found;
}
