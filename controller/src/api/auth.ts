import type { NextFunction, Request, Response } from "express";
import { WeftError } from "../errors.js";
import { authenticate, type Principal } from "../auth/tokens.js";
import type { ApiContext } from "./context.js";

/** Bearer-token authentication (RFC 6750 section 2.1). Sets res.locals.principal. */
export function requireToken(ctx: ApiContext, kinds: Principal["kind"][]) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.get("authorization");
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m?.[1]) {
      ctx.metrics.authFailures.inc({ reason: "missing" });
      res.set("WWW-Authenticate", 'Bearer realm="weft"');
      throw new WeftError("unauthorized", "TOKEN_MISSING", "this request needs a bearer token");
    }
    const principal = await authenticate(ctx.db, m[1], kinds);
    if (!principal) {
      ctx.metrics.authFailures.inc({ reason: "invalid" });
      res.locals["log"]?.warn({ remote: req.socket.remoteAddress ?? "unix" }, "refused a wrong token");
      res.set("WWW-Authenticate", 'Bearer realm="weft", error="invalid_token"');
      throw new WeftError("unauthorized", "TOKEN_INVALID", "the token is not valid");
    }
    res.locals["principal"] = principal;
    next();
  };
}

/** How events name whoever made a request. */
export function actorOf(res: Response): string {
  const p = res.locals["principal"] as Principal | undefined;
  if (!p) return "anonymous";
  return p.kind === "agent" ? `agent:${p.machineId ?? "?"}` : `operator:${p.name}`;
}
