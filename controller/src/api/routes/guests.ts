// Roles, guests and hosts. Creating or scaling a role answers 202 at once with the role and
// its guests (pending); watch GET /v1/guests?role=NAME until they are running. Deleting waits
// for the hosts to let go of the guests.
import { Router } from "express";
import { z } from "zod";
import { GuestSpecInput } from "../../guests/spec.js";
import { listHostViews, type GuestService } from "../../guests/service.js";
import type { ApiContext } from "../context.js";
import { actorOf } from "../auth.js";
import { parse } from "../validate.js";

const CreateRoleBody = z.strictObject({
  name: z.string().min(1).max(40),
  instances: z.number().int().min(0).max(200),
  spec: GuestSpecInput,
});
const ScaleBody = z.strictObject({ instances: z.number().int().min(0).max(200) });
const NameParams = z.object({ name: z.string().min(1).max(64) });
const GuestsQuery = z.strictObject({ role: z.string().min(1).max(40).optional() });

export function rolesRouter(_ctx: ApiContext, service: GuestService): Router {
  const r = Router();
  r.get("/", async (_req, res) => {
    res.json({ items: await service.listRoles() });
  });
  r.get("/:name", async (req, res) => {
    const { name } = parse(NameParams, req.params, "params");
    res.json({ ...(await service.getRole(name)), items: await service.listGuests({ role: name }) });
  });
  r.post("/", async (req, res) => {
    const body = parse(CreateRoleBody, req.body, "body");
    const out = await service.createRole(body, actorOf(res));
    res
      .status(202)
      .location(`/v1/roles/${encodeURIComponent(out.role.name)}`)
      .json(out);
  });
  r.post("/:name/scale", async (req, res) => {
    const { name } = parse(NameParams, req.params, "params");
    const { instances } = parse(ScaleBody, req.body, "body");
    const out = await service.scaleRole(name, instances, actorOf(res));
    res
      .status(202)
      .location(`/v1/roles/${encodeURIComponent(name)}`)
      .json(out);
  });
  r.delete("/:name", async (req, res) => {
    const { name } = parse(NameParams, req.params, "params");
    await service.deleteRole(name, actorOf(res));
    res.status(204).end();
  });
  return r;
}

export function guestsRouter(_ctx: ApiContext, service: GuestService): Router {
  const r = Router();
  r.get("/", async (req, res) => {
    const q = parse(GuestsQuery, req.query, "query");
    res.json({ items: await service.listGuests(q.role === undefined ? {} : { role: q.role }) });
  });
  r.get("/:name", async (req, res) => {
    const { name } = parse(NameParams, req.params, "params");
    res.json(await service.getGuest(name));
  });
  r.delete("/:name", async (req, res) => {
    const { name } = parse(NameParams, req.params, "params");
    await service.deleteGuest(name, actorOf(res));
    res.status(204).end();
  });
  return r;
}

/** Hosts with their total, used and free guest capacity. */
export function hostsRouter(ctx: ApiContext): Router {
  const r = Router();
  r.get("/", async (_req, res) => {
    res.json({ items: await listHostViews(ctx.db) });
  });
  return r;
}
