// The one door to subprocesses. Every command the agent runs (sgdisk, e2fsck, extlinux,
// qemu-img, virsh, reboot, ...) goes through an Exec, which logs the command line, its exit
// code and duration, and turns failures into AgentErrors. The process-spawning part is a
// Runner that tests replace (see test/helpers/exec.ts: any command a test did not stub fails
// loudly), so no unit test can touch a real disk by accident.
import { execa } from "execa";
import { systemClock, type Clock } from "./clock.js";
import { AgentError } from "./errors.js";
import type { Logger } from "./log.js";

export interface ExecOptions {
  /** Exit codes that count as success (default [0]); e2fsck uses 1 and 2 for "fixed". */
  okExitCodes?: readonly number[];
  input?: string;
  timeoutMs?: number;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ExecResult extends RunResult {
  command: string;
  args: readonly string[];
  durationMs: number;
}

/** Spawns one process and waits for it; never throws for a non-zero exit code. */
export type Runner = (command: string, args: readonly string[], options: ExecOptions) => Promise<RunResult>;

export interface Exec {
  run(command: string, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
}

export const execaRunner: Runner = async (command, args, options) => {
  try {
    const r = await execa(command, [...args], {
      reject: false,
      stripFinalNewline: false,
      ...(options.input === undefined ? { stdin: "ignore" as const } : { input: options.input }),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
    });
    if (r.failed && r.exitCode === undefined) {
      // The process did not run or was killed: missing binary, timeout, signal.
      const code = (r.cause as NodeJS.ErrnoException | undefined)?.code;
      if (code === "ENOENT") {
        throw new AgentError("exec", "EXEC_NOT_FOUND", `${command}: command not found`, {
          details: { command },
        });
      }
      throw new AgentError(
        "exec",
        r.timedOut ? "EXEC_TIMEOUT" : "EXEC_KILLED",
        `${command}: ${r.shortMessage}`,
        {
          details: { command, args, signal: r.signal ?? null },
        },
      );
    }
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  } catch (err) {
    if (err instanceof AgentError) throw err;
    throw new AgentError("exec", "EXEC_SPAWN_FAILED", `${command}: ${(err as Error).message}`, {
      cause: err,
    });
  }
};

const tail = (s: string, n = 600): string => (s.length > n ? `…${s.slice(-n)}` : s).trim();

export function createExec(log: Logger, runner: Runner = execaRunner, clock: Clock = systemClock): Exec {
  return {
    async run(command, args, options = {}) {
      const started = clock.now();
      const line = [command, ...args].join(" ");
      let r: RunResult;
      try {
        r = await runner(command, args, options);
      } catch (err) {
        log.warn("exec failed to run", { cmd: line, error: (err as Error).message });
        throw err;
      }
      const durationMs = clock.now() - started;
      log.info("exec", { cmd: line, exit: r.exitCode, ms: durationMs });
      const ok = options.okExitCodes ?? [0];
      if (!ok.includes(r.exitCode)) {
        throw new AgentError(
          "exec",
          "EXEC_FAILED",
          `${line}: exit code ${r.exitCode}: ${tail(r.stderr) || tail(r.stdout)}`,
          {
            details: { command, args, exitCode: r.exitCode, stderr: tail(r.stderr, 2000) },
          },
        );
      }
      return { ...r, command, args, durationMs };
    },
  };
}
