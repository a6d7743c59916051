// Starts QEMU under the emulator (TCG) with its serial console in a file, waits for lines on it,
// and stops it by its own PID.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";

export interface Vm {
  readonly pid: number;
  readonly serialLog: string;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<{ seconds: number; text: string }>;
  /** Whether QEMU ended (with -no-reboot, a guest's reboot ends it) within the time. */
  waitExit(timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

export function startQemu(args: readonly string[], serialLog: string): Vm {
  const started = Date.now();
  const child: ChildProcess = spawn(
    "qemu-system-x86_64",
    [
      "-accel",
      "tcg",
      "-display",
      "none",
      "-monitor",
      "none",
      "-no-reboot",
      "-serial",
      `file:${serialLog}`,
      ...args,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.on("exit", () => (exited = true));
  if (child.pid === undefined) throw new Error("qemu-system-x86_64 did not start");
  const pid = child.pid;
  return {
    pid,
    serialLog,
    async waitFor(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      let text = "";
      while (Date.now() < deadline) {
        text = await readFile(serialLog, "latin1").catch(() => "");
        if (pattern.test(text)) return { seconds: (Date.now() - started) / 1000, text };
        if (exited) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw new Error(
        `${pattern} not seen on the serial console${exited ? " (QEMU exited)" : ` within ${timeoutMs} ms`}; ` +
          `stderr: ${stderr.slice(-500)}; serial tail: ${text.slice(-1500)}`,
      );
    },
    async waitExit(timeoutMs) {
      if (exited) return true;
      return new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
    },
    async stop() {
      if (exited) return;
      const gone = new Promise((r) => child.once("exit", r));
      process.kill(pid, "SIGKILL");
      await gone;
    },
  };
}

/** A loopback TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
