// A stubbed Runner for tests: each expected command line gets a canned result; any command
// nobody stubbed throws at once (and is remembered in `unstubbed`, so a caller that swallows
// the error still fails the test's afterEach check). Nothing here spawns a process.
import type { ExecOptions, RunResult, Runner } from "../../src/exec.js";

export type StubResult =
  | Partial<RunResult>
  | ((args: readonly string[], options: ExecOptions) => Partial<RunResult> | Promise<Partial<RunResult>>);

export interface Stub {
  /** Exact command line (`cmd arg1 arg2`), a regular expression on it, or a predicate. */
  match: string | RegExp | ((line: string) => boolean);
  result?: StubResult;
  /** Allowed number of calls; unlimited by default. */
  times?: number;
}

export interface StubbedRunner {
  runner: Runner;
  /** Every command line run, in order. */
  calls: string[];
  /** Command lines that had no stub. */
  unstubbed: string[];
  stub(match: Stub["match"], result?: StubResult, times?: number): StubbedRunner;
}

export class UnstubbedCommandError extends Error {
  override readonly name = "UnstubbedCommandError";
}

export function stubRunner(stubs: Stub[] = []): StubbedRunner {
  const list = [...stubs];
  const used = new Map<Stub, number>();
  const calls: string[] = [];
  const unstubbed: string[] = [];
  const matches = (s: Stub, line: string): boolean =>
    typeof s.match === "string"
      ? s.match === line
      : s.match instanceof RegExp
        ? s.match.test(line)
        : s.match(line);
  const self: StubbedRunner = {
    calls,
    unstubbed,
    stub(match, result, times) {
      list.push({
        match,
        ...(result === undefined ? {} : { result }),
        ...(times === undefined ? {} : { times }),
      });
      return self;
    },
    runner: async (command, args, options) => {
      const line = [command, ...args].join(" ");
      calls.push(line);
      const s = list.find((x) => matches(x, line) && (x.times === undefined || (used.get(x) ?? 0) < x.times));
      if (!s) {
        unstubbed.push(line);
        throw new UnstubbedCommandError(`test did not stub this command: ${line}`);
      }
      used.set(s, (used.get(s) ?? 0) + 1);
      const r = typeof s.result === "function" ? await s.result(args, options) : (s.result ?? {});
      return { exitCode: r.exitCode ?? 0, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
  };
  return self;
}
