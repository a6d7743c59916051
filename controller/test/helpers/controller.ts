// Starts the real controller (the built entry point) on a temporary data directory, and
// calls its API over TCP or the unix socket.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const controllerMain = path.join(repoRoot, "controller/dist/main.js");
export const cliMain = path.join(repoRoot, "controller/dist/cli/main.js");

export interface Running {
  proc: ChildProcess;
  dataDir: string;
  socket: string;
  tokenFile: string;
  url: string;
  logs: string[];
  token(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function tempDir(prefix = "weft-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Resolves once the controller logs "controller started"; rejects if it exits first. */
export function startController(dataDir: string, extraArgs: string[] = []): Promise<Running> {
  const socket = path.join(dataDir, "weft.sock");
  const tokenFile = path.join(dataDir, "admin.token");
  const proc = spawn(
    process.execPath,
    [controllerMain, "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--socket", socket, ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WEFT_LOG_LEVEL: "info" } },
  );
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = "";
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    proc.stderr!.on("data", (d: Buffer) => logs.push(d.toString()));
    proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; listeners?: string[] };
          if (rec.msg === "controller started") {
            const url = rec.listeners!.find((l) => l.startsWith("http://"))!;
            resolve({
              proc,
              dataDir,
              socket,
              tokenFile,
              url,
              logs,
              token: () => fs.readFileSync(tokenFile, "utf8").trim(),
              stop: async (signal = "SIGTERM") => {
                if (proc.exitCode === null) proc.kill(signal);
                return exited;
              },
            });
          }
        } catch {
          /* not a JSON line */
        }
      }
    });
    void exited.then((code) => reject(new Error(`controller exited with ${code}:\n${logs.join("\n")}`)));
    setTimeout(() => reject(new Error(`controller did not start:\n${logs.join("\n")}`)), 30_000).unref();
  });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

export function call(
  where: { url?: string; socket?: string },
  method: string,
  p: string,
  opts: { token?: string; body?: string | object; contentType?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    if (opts.token) headers["authorization"] = `Bearer ${opts.token}`;
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body));
      headers["content-type"] = opts.contentType ?? "application/json";
      headers["content-length"] = payload.length;
    }
    const base: http.RequestOptions = where.socket
      ? { socketPath: where.socket }
      : { host: new URL(where.url!).hostname, port: new URL(where.url!).port };
    const req = http.request({ ...base, method, path: p, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(payload);
  });
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliMain, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WEFT_TOKEN: undefined, WEFT_URL: undefined, ...env },
    });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}
