import { Router } from "express";
import { notFound } from "../../errors.js";
import type { ApiContext } from "../context.js";

export function jobsRouter(ctx: ApiContext): Router {
  const r = Router();
  r.get("/:id", async (req, res) => {
    const job = await ctx.db.job.findUnique({
      where: { id: req.params.id },
      include: { steps: { orderBy: { seq: "asc" } } },
    });
    if (!job) throw notFound("job", req.params.id);
    res.json(job);
  });
  return r;
}
