// A fake controller speaking the agent protocol of wire/src/agent.ts over real HTTP on
// 127.0.0.1:0: it checks every body against the wire schemas, exchanges one nonce for a token
// (once), answers heartbeats from a script and records command reports.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  CommandReport,
  EnlistRequest,
  HeartbeatRequest,
  HostRegisterRequest,
  type ApiErrorBody,
} from "@weft/wire";

export interface FakeControllerOptions {
  nonce: string;
  token?: string;
  machineId?: string;
  /** Heartbeat answers in order (raw, so tests can send commands the agent cannot parse); then none. */
  script?: unknown[][];
  intervalSeconds?: number;
  /** Refuse every token (as if the machine was deleted). */
  refuseTokens?: boolean;
  /** Answer this many SUCCEEDED/FAILED reports with 503 first (a controller restarting). */
  unavailableFinalReports?: number;
  /** Revoke the token once it reports a command SUCCEEDED, as the controller does for an install. */
  revokeOnSuccess?: boolean;
}

export interface FakeController {
  url: string;
  enlists: EnlistRequest[];
  heartbeats: HeartbeatRequest[];
  reports: { id: string; report: CommandReport }[];
  registrations: HostRegisterRequest[];
  refused: string[];
  close(): Promise<void>;
}

export async function fakeController(opts: FakeControllerOptions): Promise<FakeController> {
  const token = opts.token ?? "tok-abc";
  const script = [...(opts.script ?? [])];
  let nonceUsed = false;
  let unavailable = opts.unavailableFinalReports ?? 0;
  let revoked = false;
  const state: Omit<FakeController, "url" | "close"> = {
    enlists: [],
    heartbeats: [],
    reports: [],
    registrations: [],
    refused: [],
  };

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  const fail = (
    res: ServerResponse,
    status: number,
    type: ApiErrorBody["type"],
    code: string,
    message: string,
  ): void => {
    state.refused.push(code);
    send(res, status, { type, code, message });
  };
  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  };

  const server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const url = req.url ?? "";
      if (req.method !== "POST") return fail(res, 405, "invalid_request", "METHOD", "POST only");
      if (url === "/v1/agent/enlist") {
        const r = EnlistRequest.safeParse(body);
        if (!r.success) return fail(res, 400, "invalid_request", "INVALID_BODY", r.error.message);
        state.enlists.push(r.data);
        if (r.data.nonce !== opts.nonce || nonceUsed)
          return fail(res, 401, "unauthorized", "NONCE_INVALID", "unknown or used nonce");
        nonceUsed = true;
        return send(res, 200, { machineId: opts.machineId ?? "m-1", token });
      }
      if (opts.refuseTokens || revoked || req.headers.authorization !== `Bearer ${token}`) {
        return fail(res, 401, "unauthorized", "TOKEN_INVALID", "unknown agent token");
      }
      if (url === "/v1/agent/heartbeat") {
        const r = HeartbeatRequest.safeParse(body);
        if (!r.success) return fail(res, 400, "invalid_request", "INVALID_BODY", r.error.message);
        state.heartbeats.push(r.data);
        return send(res, 200, {
          commands: script.shift() ?? [],
          intervalSeconds: opts.intervalSeconds ?? 10,
        });
      }
      const m = /^\/v1\/agent\/commands\/([^/]+)$/.exec(url);
      if (m) {
        const r = CommandReport.safeParse(body);
        if (!r.success) return fail(res, 400, "invalid_request", "INVALID_BODY", r.error.message);
        if (r.data.state !== "RUNNING" && unavailable > 0) {
          unavailable--;
          return fail(res, 503, "unavailable", "STARTING", "controller starting");
        }
        state.reports.push({ id: decodeURIComponent(m[1] ?? ""), report: r.data });
        if (r.data.state === "SUCCEEDED" && opts.revokeOnSuccess) revoked = true;
        return send(res, 200, {});
      }
      if (url === "/v1/agent/host/register") {
        const r = HostRegisterRequest.safeParse(body);
        if (!r.success) return fail(res, 400, "invalid_request", "INVALID_BODY", r.error.message);
        state.registrations.push(r.data);
        return send(res, 200, {});
      }
      return fail(res, 404, "not_found", "NOT_FOUND", url);
    })().catch((err: unknown) => send(res, 500, { type: "internal", code: "FAKE", message: String(err) }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    ...state,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
