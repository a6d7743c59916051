import { Router } from "express";
import { CommandReport, EnlistRequest, HeartbeatRequest, HostRegisterRequest } from "@weft/wire";
import type { Principal } from "../../auth/tokens.js";
import { HEARTBEAT_SECONDS } from "../../machines/agents.js";
import type { ApiContext } from "../context.js";
import { requireToken } from "../auth.js";
import { parse } from "../validate.js";

/** The agent protocol (wire/src/agent.ts). Enlist is authorised by the boot nonce in its body. */
export function agentRouter(ctx: ApiContext): Router {
  const r = Router();
  const principal = (res: { locals: Record<string, unknown> }) => res.locals["principal"] as Principal;

  r.post("/enlist", async (req, res) => {
    const body = parse(EnlistRequest, req.body, "body");
    res.json(await ctx.agents.enlist(body, req.socket.remoteAddress ?? "unix"));
  });

  r.use(requireToken(ctx, ["agent"]));

  r.post("/heartbeat", async (req, res) => {
    const body = parse(HeartbeatRequest, req.body, "body");
    const p = principal(res);
    if (body.mode === "host") await ctx.agents.hostHeartbeat(p);
    res.json({
      commands: await ctx.agents.heartbeat(p, req.socket.remoteAddress ?? null),
      intervalSeconds: HEARTBEAT_SECONDS,
    });
  });

  r.post("/commands/:id", async (req, res) => {
    await ctx.agents.report(principal(res), req.params.id, parse(CommandReport, req.body, "body"));
    res.status(204).end();
  });

  r.post("/host/register", async (req, res) => {
    await ctx.agents.registerHost(principal(res), parse(HostRegisterRequest, req.body, "body"));
    res.status(204).end();
  });

  return r;
}
