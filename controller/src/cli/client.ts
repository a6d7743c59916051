// The CLI's way to the controller: the local unix socket by default, or a URL. Errors are
// sorted into the CLI's exit codes: the controller refused (1) or could not be reached (3).
import fs from "node:fs";
import http from "node:http";
import { ApiErrorBody } from "@weft/wire";

export const EXIT = { ok: 0, failure: 1, usage: 2, unreachable: 3 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly body?: ApiErrorBody,
  ) {
    super(message);
  }
}

export interface Target {
  url?: string | undefined;
  socket: string;
  token?: string | undefined;
}

export function readToken(file: string, explicit: boolean): string | undefined {
  try {
    return fs.readFileSync(file, "utf8").trim();
  } catch (err) {
    if (explicit)
      throw new CliError(
        `cannot read token file ${file}: ${(err as NodeJS.ErrnoException).code}`,
        EXIT.usage,
      );
    return undefined;
  }
}

export class Client {
  constructor(readonly target: Target) {}

  private options(path: string, method: string): http.RequestOptions {
    const headers: http.OutgoingHttpHeaders = { accept: "application/json" };
    if (this.target.token) headers["authorization"] = `Bearer ${this.target.token}`;
    if (this.target.url) {
      const u = new URL(path, this.target.url);
      if (u.protocol !== "http:") throw new CliError(`unsupported URL scheme ${u.protocol}`, EXIT.usage);
      return { host: u.hostname, port: u.port || 80, path: u.pathname + u.search, method, headers };
    }
    return { socketPath: this.target.socket, path, method, headers };
  }

  private where(): string {
    return this.target.url ?? `unix:${this.target.socket}`;
  }

  /** Sends a request; resolves with the response, rejects with a CliError for unreachable. */
  private send(path: string, method: string, body?: unknown): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const opts = this.options(path, method);
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      if (payload) {
        opts.headers = {
          ...opts.headers,
          "content-type": "application/json",
          "content-length": payload.length,
        };
      }
      const req = http.request(opts, resolve);
      req.on("error", (err: NodeJS.ErrnoException) =>
        reject(
          new CliError(
            `cannot reach the controller at ${this.where()}: ${err.code ?? err.message}`,
            EXIT.unreachable,
          ),
        ),
      );
      req.setTimeout(30_000, () => req.destroy(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" })));
      req.end(payload);
    });
  }

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(path, method, body);
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      throw new CliError(
        `the controller sent a response that is not JSON (HTTP ${res.statusCode})`,
        EXIT.failure,
      );
    }
    if ((res.statusCode ?? 500) >= 400) {
      const err = ApiErrorBody.safeParse(json);
      if (err.success) {
        const hint = err.data.code.startsWith("TOKEN_")
          ? " (is the token file readable? see --token-file)"
          : "";
        throw new CliError(`${err.data.message} [${err.data.code}]${hint}`, EXIT.failure, err.data);
      }
      throw new CliError(`HTTP ${res.statusCode}`, EXIT.failure);
    }
    return json as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }

  /** Follows a server-sent event stream, calling onData with each event's parsed data. */
  async stream(path: string, onData: (data: unknown) => void, signal?: AbortSignal): Promise<void> {
    const res = await this.send(path, "GET");
    if ((res.statusCode ?? 500) >= 400) {
      res.resume();
      await this.request("GET", path); // re-issue to turn the error body into a CliError
      return;
    }
    signal?.addEventListener("abort", () => res.destroy(), { once: true });
    let buf = "";
    try {
      for await (const chunk of res) {
        buf += (chunk as Buffer).toString("utf8");
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block
            .split("\n")
            .filter((l) => l.startsWith("data: "))
            .map((l) => l.slice(6))
            .join("\n");
          if (data) onData(JSON.parse(data));
        }
      }
    } catch (err) {
      if (!signal?.aborted)
        throw new CliError(`event stream ended: ${(err as Error).message}`, EXIT.unreachable);
    }
  }
}
