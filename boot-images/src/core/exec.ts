// The one door to other programs. Every command a recipe runs goes through a CommandRunner: the
// command line and its output land in the image's build log, and a failure becomes a
// CommandError carrying the tail of stderr. Tests can pass their own runner.
import { appendFileSync } from "node:fs";
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
    try {
      const result = await execa(command, args, {
        ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
        env: { LC_ALL: "C", ...options.env },
        stdout: options.stdoutFile ? { file: options.stdoutFile } : ["pipe", logTarget],
        stderr: ["pipe", logTarget],
        ...(options.stdinFile ? { stdin: { file: options.stdinFile } } : {}),
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
        throw new CommandError(line.slice(0, 200), exitCode, tail || (result.failed ? (result.shortMessage ?? "") : ""));
      }
      return { stdout, stderr, exitCode: exitCode ?? 0 };
    } catch (err) {
      if (err instanceof CommandError) throw err;
      throw new CommandError(line.slice(0, 200), undefined, err instanceof Error ? err.message : String(err), err);
    }
  }
}
