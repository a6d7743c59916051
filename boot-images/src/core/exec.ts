// The one door to other programs. Every command a recipe runs goes through a CommandRunner: the
// command line and its output land in the image's build log, and a failure becomes a
// CommandError carrying the tail of stderr. Tests can pass their own runner.
import { appendFileSync, closeSync, openSync } from "node:fs";
import { spawn } from "node:child_process";
import { execa } from "execa";
import { CommandError } from "./errors.js";

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Write the command's stdout to this file instead of capturing it. */
  readonly stdoutFile?: string;
  /** Feed this file to the command's stdin. */
  readonly stdinFile?: string;
  /** Feed this text to the command's stdin. */
  readonly input?: string;
  /** Exit codes that are not failures (default: only 0). */
  readonly okExitCodes?: readonly number[];
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface CommandRunner {
  run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
}

const quote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);

/** Runs commands for real and appends everything to `logFile`. */
export class LoggedRunner implements CommandRunner {
  constructor(private readonly logFile: string) {}

  log(line: string): void {
    appendFileSync(this.logFile, `${line}\n`);
  }

  async run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const line = [command, ...args].map(quote).join(" ");
    this.log(`$ ${line}`);
    const started = Date.now();
    const logTarget = { file: this.logFile, append: true } as const;
    // Files are handed to the child as plain descriptors (no pipe through this process).
    const outFd = options.stdoutFile ? openSync(options.stdoutFile, "w") : undefined;
    const inFd = options.stdinFile ? openSync(options.stdinFile, "r") : undefined;
    try {
      if (outFd !== undefined || inFd !== undefined) {
        const r = await spawnWithFds(command, args, options, inFd, outFd);
        appendFileSync(this.logFile, r.stderr);
        this.log(`# exit ${r.exitCode} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
        if (r.exitCode !== 0 && !(options.okExitCodes ?? []).includes(r.exitCode)) {
          throw new CommandError(
            line.slice(0, 200),
            r.exitCode,
            r.stderr.trim().split("\n").slice(-3).join(" | "),
          );
        }
        return { stdout: "", stderr: r.stderr, exitCode: r.exitCode };
      }
      const result = await execa(command, args, {
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        env: { LC_ALL: "C", ...options.env },
        stdout: ["pipe", logTarget],
        stderr: ["pipe", logTarget],
        ...(options.input !== undefined ? { input: options.input } : {}),
        reject: false,
        maxBuffer: 64 * 1024 * 1024,
      });
      const stdout = typeof result.stdout === "string" ? result.stdout : "";
      const stderr = typeof result.stderr === "string" ? result.stderr : "";
      const exitCode = result.exitCode;
      const ok = exitCode !== undefined && [0, ...(options.okExitCodes ?? [])].includes(exitCode);
      this.log(`# exit ${exitCode ?? "-"} after ${((Date.now() - started) / 1000).toFixed(1)} s`);
      if (!ok) {
        const tail = stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 400);
        throw new CommandError(
          line.slice(0, 200),
          exitCode,
          tail || (result.failed ? (result.shortMessage ?? "") : ""),
        );
      }
      return { stdout, stderr, exitCode: exitCode ?? 0 };
    } catch (err) {
      if (err instanceof CommandError) throw err;
      throw new CommandError(
        line.slice(0, 200),
        undefined,
        err instanceof Error ? err.message : String(err),
        err,
      );
    } finally {
      if (outFd !== undefined) closeSync(outFd);
      if (inFd !== undefined) closeSync(inFd);
    }
  }
}

/** Runs a command with files bound directly to its stdin/stdout (no copying through Node). */
function spawnWithFds(
  command: string,
  args: readonly string[],
  options: RunOptions,
  inFd: number | undefined,
  outFd: number | undefined,
): Promise<{ exitCode: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      env: { ...process.env, LC_ALL: "C", ...options.env },
      stdio: [inFd ?? "ignore", outFd ?? "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (d: string) => {
      stderr = (stderr + d).slice(-65536);
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ exitCode: code ?? (signal ? 128 : 1), stderr }));
  });
}
