// The controller client. The agent only ever calls the controller (it polls); every call is a
// JSON POST. Network errors, timeouts, 429 and 5xx answers are retried with exponential
// backoff and full jitter; other 4xx answers are final and become typed AgentErrors carrying
// the controller's {type, code, message, details}.
import {
  ApiErrorBody,
  Command,
  EnlistResponse,
  type CommandReport,
  type EnlistRequest,
  type HeartbeatRequest,
  type HostRegisterRequest,
} from "@weft/wire";
import { z } from "zod";
import { systemClock, type Clock, type Random } from "./clock.js";
import { AgentError, type AgentErrorType } from "./errors.js";
import { silentLogger, type Logger } from "./log.js";

export type Fetch = typeof globalThis.fetch;

export interface RetryPolicy {
  /** Total tries, the first included. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export interface ClientOptions {
  baseUrl: string;
  token?: string;
  fetch?: Fetch;
  clock?: Clock;
  random?: Random;
  log?: Logger;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout. */
  timeoutMs?: number;
}

const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 500, maxMs: 15_000 };

/** Backoff before retry number `n` (1-based): full jitter over an exponential ceiling. */
export function backoffMs(n: number, policy: RetryPolicy, random: Random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** (n - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function typeForStatus(status: number): AgentErrorType {
  if (status === 401 || status === 403) return "unauthorized";
  if (status >= 500) return "unavailable";
  return "invalid_request";
}

class Retryable extends Error {}

const LenientHeartbeatResponse = z.object({
  commands: z.array(z.unknown()),
  intervalSeconds: z.number().positive(),
});

export type ParsedCommand =
  | { ok: true; command: Command }
  | { ok: false; id: string | null; kind: string | null; issues: z.core.$ZodIssue[] };

export interface HeartbeatResult {
  commands: ParsedCommand[];
  intervalSeconds: number;
}

export class ControllerClient {
  private token: string | undefined;
  private readonly fetch: Fetch;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly log: Logger;
  private readonly retry: RetryPolicy;
  private readonly timeoutMs: number;
  readonly baseUrl: string;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
    this.token = opts.token;
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
    this.log = opts.log ?? silentLogger;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  setToken(token: string): void {
    this.token = token;
  }

  async enlist(req: EnlistRequest): Promise<EnlistResponse> {
    return this.post("/v1/agent/enlist", req, EnlistResponse, false);
  }

  /**
   * One heartbeat. Commands are validated one by one, so a single command this agent cannot
   * parse (say, an image format it does not know) is reported FAILED rather than making the
   * whole answer unreadable.
   */
  async heartbeat(req: HeartbeatRequest): Promise<HeartbeatResult> {
    const res = await this.post("/v1/agent/heartbeat", req, LenientHeartbeatResponse, true);
    return {
      intervalSeconds: res.intervalSeconds,
      commands: res.commands.map((raw): ParsedCommand => {
        const r = Command.safeParse(raw);
        if (r.success) return { ok: true, command: r.data };
        const obj = raw as { id?: unknown; kind?: unknown };
        return {
          ok: false,
          id: typeof obj.id === "string" ? obj.id : null,
          kind: typeof obj.kind === "string" ? obj.kind : null,
          issues: r.error.issues,
        };
      }),
    };
  }

  async report(commandId: string, report: CommandReport): Promise<void> {
    await this.post(`/v1/agent/commands/${encodeURIComponent(commandId)}`, report, null, true);
  }

  async registerHost(req: HostRegisterRequest): Promise<void> {
    await this.post("/v1/agent/host/register", req, null, true);
  }

  private async post<T>(path: string, body: unknown, schema: z.ZodType<T> | null, auth: boolean): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    if (auth && this.token === undefined) {
      throw new AgentError("unauthorized", "NO_TOKEN", `no agent token yet for ${path}`);
    }
    let last: Error = new Error("no attempt made");
    for (let attempt = 1; attempt <= this.retry.attempts; attempt++) {
      if (attempt > 1) {
        const wait = backoffMs(attempt - 1, this.retry, this.random);
        this.log.warn("controller call failed; retrying", {
          path,
          attempt,
          waitMs: wait,
          error: last.message,
        });
        await this.clock.sleep(wait);
      }
      try {
        return await this.once(url, path, body, schema, auth);
      } catch (err) {
        if (!(err instanceof Retryable)) throw err;
        last = err;
      }
    }
    throw new AgentError(
      "unavailable",
      "CONTROLLER_UNREACHABLE",
      `controller ${this.baseUrl} unreachable after ${this.retry.attempts} tries: ${last.message}`,
      { details: { path }, cause: last },
    );
  }

  private async once<T>(
    url: string,
    path: string,
    body: unknown,
    schema: z.ZodType<T> | null,
    auth: boolean,
  ): Promise<T> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json",
    };
    if (auth && this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    let res: Response;
    try {
      res = await this.fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new Retryable(cause?.code ?? cause?.message ?? (err as Error).message);
    }
    const text = await res.text().catch(() => "");
    if (res.status === 429 || res.status >= 500) throw new Retryable(`HTTP ${res.status}`);
    if (!res.ok) {
      let parsed: ApiErrorBody | undefined;
      try {
        const r = ApiErrorBody.safeParse(JSON.parse(text));
        if (r.success) parsed = r.data;
      } catch {
        // not JSON: keep the status line
      }
      throw new AgentError(
        parsed?.type === "unauthorized" || parsed?.type === "forbidden"
          ? "unauthorized"
          : typeForStatus(res.status),
        parsed?.code ?? `HTTP_${res.status}`,
        `${path}: ${res.status} ${parsed?.message ?? (text.slice(0, 200) || res.statusText)}`,
        {
          details: {
            status: res.status,
            ...(parsed?.details === undefined ? {} : { controller: parsed.details }),
          },
        },
      );
    }
    if (schema === null) return undefined as T;
    let json: unknown;
    try {
      json = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new AgentError("internal", "CONTROLLER_RESPONSE_INVALID", `${path}: response is not JSON`);
    }
    const r = schema.safeParse(json);
    if (!r.success) {
      throw new AgentError("internal", "CONTROLLER_RESPONSE_INVALID", `${path}: unexpected response`, {
        details: { issues: r.error.issues },
      });
    }
    return r.data;
  }
}
