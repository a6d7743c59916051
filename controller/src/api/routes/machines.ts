import { Router } from "express";
import { z } from "zod";
import { conflict } from "../../errors.js";
import type { ApiContext } from "../context.js";
import { parse } from "../validate.js";
import { actorOf } from "../auth.js";

const Name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lower-case letters, digits and dashes");
const Mac = z
  .string()
  .transform((s) => s.toLowerCase().replaceAll("-", ":"))
  .pipe(z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/, "a MAC address such as 52:54:00:12:34:56"));

/** An operator registering a machine it knows of before it boots (name, NICs, power). */
const CreateMachine = z
  .object({
    name: Name,
    macs: z.array(Mac).min(1).max(16),
    powerDriver: z.string().min(1).max(32).optional(),
    powerParams: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export function machinesRouter(ctx: ApiContext): Router {
  const r = Router();

  r.get("/", async (_req, res) => {
    res.json({ items: await ctx.store.listMachines() });
  });

  r.get("/:id", async (req, res) => {
    const m = await ctx.store.getMachine(req.params.id);
    const events = await ctx.store.listEvents({ subjectType: "machine", subjectId: m.id, limit: 50 });
    res.json({ ...m, events });
  });

  r.post("/", async (req, res) => {
    const body = parse(CreateMachine, req.body, "body");
    const macs = [...new Set(body.macs)];
    const taken = await ctx.db.nic.findMany({ where: { mac: { in: macs } }, select: { mac: true } });
    if (taken.length) throw conflict("MAC_IN_USE", "a machine with this MAC already exists", taken);
    if (await ctx.db.machine.findUnique({ where: { name: body.name } })) {
      throw conflict("NAME_IN_USE", `a machine named ${body.name} already exists`);
    }
    const id = await ctx.db.$transaction(async (tx) => {
      const m = await tx.machine.create({
        data: {
          name: body.name,
          provisionState: "discovered",
          powerDriver: body.powerDriver ?? null,
          ...(body.powerParams ? { powerParams: body.powerParams as object } : {}),
          nics: { create: macs.map((mac, i) => ({ mac, pxe: i === 0 })) },
        },
      });
      await ctx.store.recordEvent(
        {
          subjectType: "machine",
          subjectId: m.id,
          actor: actorOf(res),
          toState: "discovered",
          message: `registered ${body.name} (${macs.join(", ")})`,
        },
        tx,
      );
      return m.id;
    });
    res
      .status(201)
      .location(`/v1/machines/${id}`)
      .json(await ctx.store.getMachine(id));
  });

  return r;
}
