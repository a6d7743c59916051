// The REST API: /healthz and /metrics for the infrastructure, everything else under /v1
// behind an operator token. Errors leave as `{type, code, message, details}`.
import crypto from "node:crypto";
import express, { type NextFunction, type Request, type Response } from "express";
import { WeftError } from "../errors.js";
import type { ApiContext } from "./context.js";
import { requireToken } from "./auth.js";
import { machinesRouter } from "./routes/machines.js";
import { eventsRouter } from "./routes/events.js";
import { agentRouter } from "./routes/agent.js";
import { imagesRouter } from "./routes/images.js";
import { jobsRouter } from "./routes/jobs.js";
import { guestsRouter, hostsRouter, rolesRouter } from "./routes/guests.js";
import type { GuestService } from "../guests/service.js";
import { bootRouter, type BootConfig } from "../netboot/http/boot.js";
import { isPowerError } from "../power/driver.js";

export function createApp(ctx: ApiContext, guests: GuestService, boot: BootConfig): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("query parser", "simple");

  // Request id and a per-request logger; one access line per request.
  app.use((req, res, next) => {
    const incoming = req.get("x-request-id");
    const id = incoming && /^[\w.-]{1,64}$/.test(incoming) ? incoming : crypto.randomUUID();
    res.set("x-request-id", id);
    const log = ctx.log.child({ reqId: id });
    res.locals["log"] = log;
    const t0 = process.hrtime.bigint();
    res.on("finish", () => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : "unmatched";
      ctx.metrics.httpRequests.inc({ method: req.method, route, status: String(res.statusCode) });
      ctx.metrics.httpDuration.observe({ method: req.method, route }, seconds);
      log.info(
        {
          method: req.method,
          url: req.originalUrl,
          status: res.statusCode,
          ms: Math.round(seconds * 1000),
          remote: req.socket.remoteAddress?.replace(/^::ffff:/, ""),
        },
        "request",
      );
    });
    next();
  });

  app.get("/healthz", async (_req, res) => {
    await ctx.db.$queryRawUnsafe("SELECT 1");
    res.json({ status: "ok" });
  });

  app.get("/metrics", async (_req, res) => {
    res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  const v1 = express.Router();
  v1.use(express.json({ limit: "1mb", strict: true }));
  v1.use((req, _res, next) => {
    // A body must be JSON: anything else would silently be ignored by the JSON parser.
    if (
      ["POST", "PUT", "PATCH"].includes(req.method) &&
      req.headers["content-length"] !== "0" &&
      !req.is("application/json")
    ) {
      throw new WeftError("invalid_request", "CONTENT_TYPE", "request bodies must be application/json");
    }
    next();
  });
  // The agent protocol authenticates with the boot nonce and agent tokens, not operator ones.
  v1.use("/agent", agentRouter(ctx));
  v1.use(requireToken(ctx, ["operator"]));

  v1.get("/version", (_req, res) => {
    res.json({ version: ctx.version, node: process.version });
  });
  v1.get("/status", async (_req, res) => {
    res.json({
      version: ctx.version,
      startedAt: ctx.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - ctx.startedAt.getTime()) / 1000),
      database: { provider: "sqlite", migrations: ctx.migrations },
      machines: await ctx.store.machineCountsByState(),
      listeners: ctx.listeners,
    });
  });
  v1.use("/machines", machinesRouter(ctx));
  v1.use("/events", eventsRouter(ctx));
  v1.use("/images", imagesRouter(ctx, boot.bootUrl));
  v1.use("/jobs", jobsRouter(ctx));
  v1.use("/roles", rolesRouter(ctx, guests));
  v1.use("/guests", guestsRouter(ctx, guests));
  v1.use("/hosts", hostsRouter(ctx));

  app.use("/v1", v1);
  app.use("/boot", bootRouter(ctx, boot));

  app.use((req: Request) => {
    throw new WeftError("not_found", "ROUTE_NOT_FOUND", `no route for ${req.method} ${req.path}`);
  });

  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const log = (res.locals["log"] as ApiContext["log"] | undefined) ?? ctx.log;
    let e: WeftError;
    if (err instanceof WeftError) e = err;
    else if (isPowerError(err)) {
      const type =
        err.httpStatus === 404 ? "not_found" : err.httpStatus === 400 ? "invalid_request" : "unavailable";
      e = new WeftError(type, err.code, err.message, { details: err.details });
    } else if (isBodyParserError(err)) {
      e =
        err.type === "entity.too.large"
          ? new WeftError("invalid_request", "BODY_TOO_LARGE", "request body is larger than 1 MiB")
          : new WeftError(
              "invalid_request",
              "BODY_MALFORMED",
              `request body is not valid JSON: ${err.message}`,
            );
    } else {
      log.error({ err }, "request failed");
      e = new WeftError("internal", "INTERNAL", "internal error; see the controller log");
    }
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(e.status).json(e.toBody());
  });

  return app;
}

function isBodyParserError(err: unknown): err is Error & { type: string; status: number } {
  return err instanceof Error && typeof (err as { type?: unknown }).type === "string" && "status" in err;
}
