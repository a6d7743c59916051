// The one door through which the guest subsystem runs host commands (qemu-img, genisoimage,
// virsh, nft, tc, ip, openssl). Each command is logged with its duration and exit code; a
// failure becomes a WeftError carrying the command and the end of its stderr. Tests pass
// their own Exec, so a command nobody stubbed fails loudly instead of touching the machine.
import { execa } from "execa";
import { WeftError } from "../errors.js";
import type { Logger } from "../log.js";

export interface ExecOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  /** Resolve with the exit code instead of throwing when the command fails. */
  allowFailure?: boolean;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export type Exec = (cmd: string, args: readonly string[], opts?: ExecOptions) => Promise<ExecResult>;

const tail = (s: string, n = 600) => (s.length > n ? `…${s.slice(-n)}` : s).trim();

export function createExec(log: Logger): Exec {
  return async (cmd, args, opts = {}) => {
    const t0 = Date.now();
    const r = await execa(cmd, [...args], {
      reject: false,
      stripFinalNewline: false,
      timeout: opts.timeoutMs ?? 120_000,
      ...(opts.input === undefined ? { stdin: "ignore" as const } : { input: opts.input }),
    });
    const exitCode = r.exitCode ?? (r.failed ? -1 : 0);
    const ms = Date.now() - t0;
    const line = { cmd, args, exitCode, ms };
    if (exitCode === 0) log.debug(line, "host command");
    else log.warn({ ...line, stderr: tail(String(r.stderr)) }, "host command failed");
    const res = { exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
    if (exitCode !== 0 && !opts.allowFailure) {
      const why = r.timedOut
        ? "timed out"
        : r.failed && r.exitCode === undefined
          ? r.shortMessage
          : `exited ${exitCode}`;
      throw new WeftError(
        "unavailable",
        "HOST_COMMAND_FAILED",
        `${cmd} ${args.join(" ")} ${why}: ${tail(String(r.stderr)) || "(no output)"}`,
        { details: { cmd, args, exitCode } },
      );
    }
    return res;
  };
}
