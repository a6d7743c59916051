// The lab's one door to the outside world: every command it runs and every daemon it
// starts goes through a LabSystem, so tests can replace it and a forgotten stub fails loudly.
import { spawn } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { execa } from "execa";
import { LabError } from "./errors.js";

export interface RunOptions {
  /** Kill the command after this long (default 60 s). */
  timeoutMs?: number;
  /** Return a failed or timed-out result instead of throwing. */
  allowFailure?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  /** The signal that ended the command, if one did. */
  signal: string | undefined;
  timedOut: boolean;
  failed: boolean;
}

export type Runner = (cmd: string, args: readonly string[], options?: RunOptions) => Promise<RunResult>;

/** Starts a long-running process detached from the lab command, output appended to logFile. */
export type Spawner = (cmd: string, args: readonly string[], logFile: string) => Promise<number>;

export interface LabSystem {
  run: Runner;
  spawnDetached: Spawner;
}

export function describeCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

export const execRun: Runner = async (cmd, args, options = {}) => {
  const r = await execa(cmd, args, {
    reject: false,
    timeout: options.timeoutMs ?? 60_000,
    stdin: "ignore",
    all: false,
    env: { LC_ALL: "C" },
  });
  const result: RunResult = {
    stdout: r.stdout,
    stderr: r.stderr,
    exitCode: r.exitCode,
    signal: r.signal,
    timedOut: r.timedOut,
    failed: r.failed,
  };
  if (result.failed && options.allowFailure !== true) {
    const why = result.timedOut
      ? `timed out after ${options.timeoutMs ?? 60_000} ms`
      : (result.signal ?? `exit ${String(result.exitCode)}`);
    const detail = (result.stderr || result.stdout || (r.message ?? ""))
      .trim()
      .split("\n")
      .slice(-5)
      .join("\n");
    throw new LabError(
      "LAB_COMMAND_FAILED",
      `${describeCommand(cmd, args)}: ${why}${detail ? `\n${detail}` : ""}`,
    );
  }
  return result;
};

export const execSpawnDetached: Spawner = async (cmd, args, logFile) => {
  const fd = openSync(logFile, "a");
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd] });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("error", (err) =>
        reject(
          new LabError("LAB_COMMAND_FAILED", `${describeCommand(cmd, args)}: ${err.message}`, { cause: err }),
        ),
      );
      child.once("spawn", () => resolve(child.pid ?? -1));
    });
    child.unref();
    return pid;
  } finally {
    closeSync(fd);
  }
};

export const realSystem: LabSystem = { run: execRun, spawnDetached: execSpawnDetached };
