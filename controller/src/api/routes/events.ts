import { Router } from "express";
import { z } from "zod";
import type { ApiContext } from "../context.js";
import { parse } from "../validate.js";

const Query = z
  .object({
    after: z.coerce.number().int().min(0).optional(),
    subjectType: z.string().max(32).optional(),
    subjectId: z.string().max(64).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    follow: z.enum(["true", "false", "1", "0"]).optional(),
  })
  .strict();

const POLL_MS = 300;
const HEARTBEAT_MS = 15_000;

export function eventsRouter(ctx: ApiContext): Router {
  const r = Router();

  r.get("/", async (req, res) => {
    const q = parse(Query, req.query, "query");
    const filter = {
      ...(q.subjectType === undefined ? {} : { subjectType: q.subjectType }),
      ...(q.subjectId === undefined ? {} : { subjectId: q.subjectId }),
    };
    const first = await ctx.store.listEvents({
      ...filter,
      ...(q.after === undefined ? {} : { afterId: q.after }),
      limit: q.limit,
    });
    if (q.follow !== "true" && q.follow !== "1") {
      res.json({ items: first });
      return;
    }
    // Server-sent events. The store is polled rather than an in-process bus used, so that
    // events written by another controller on the same database are seen too.
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    let last = q.after ?? 0;
    const send = (items: typeof first) => {
      for (const e of items) {
        res.write(`id: ${e.id}\nevent: event\ndata: ${JSON.stringify(e)}\n\n`);
        last = e.id;
      }
    };
    send(first);
    let stopped = false;
    const stop = () => {
      stopped = true;
      clearInterval(beat);
      if (!res.writableEnded) res.end();
    };
    const beat = setInterval(() => res.write(": keep-alive\n\n"), HEARTBEAT_MS);
    req.on("close", stop);
    ctx.shutdown.addEventListener("abort", stop, { once: true });
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (stopped) break;
      try {
        send(await ctx.store.listEvents({ ...filter, afterId: last, limit: 500 }));
      } catch (err) {
        ctx.log.warn({ err }, "event stream poll failed");
      }
    }
  });

  return r;
}
