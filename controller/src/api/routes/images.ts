import { Router } from "express";
import { z } from "zod";
import { imageView } from "../../images/images.js";
import type { ApiContext } from "../context.js";
import { actorOf } from "../auth.js";
import { parse } from "../validate.js";

/** Import reads a manifest on the controller's own disk (the CLI runs beside it). */
const ImportBody = z.object({ manifest: z.string().min(1).startsWith("/", "an absolute path") }).strict();

export function imagesRouter(ctx: ApiContext, bootUrl: string): Router {
  const r = Router();
  r.get("/", async (_req, res) => {
    res.json({ items: (await ctx.images.list()).map((i) => imageView(i, bootUrl)) });
  });
  r.get("/:name", async (req, res) => {
    res.json(imageView(await ctx.images.get(req.params.name), bootUrl));
  });
  r.post("/", async (req, res) => {
    const { manifest } = parse(ImportBody, req.body, "body");
    const r2 = await ctx.images.importManifest(manifest, actorOf(res));
    res
      .status(r2.unchanged ? 200 : 201)
      .json({ ...imageView(r2.image, bootUrl), replaced: r2.replaced, unchanged: r2.unchanged });
  });
  r.delete("/:name", async (req, res) => {
    await ctx.images.remove(req.params.name, actorOf(res));
    res.status(204).end();
  });
  return r;
}
