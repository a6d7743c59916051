import { Router } from "express";
import { z } from "zod";
import { conflict, invalid } from "../../errors.js";
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

  // Deploy a host image: answers at once (202) with the job to watch.
  r.post("/:id/deploy", async (req, res) => {
    const body = parse(
      z
        .object({
          image: z.string().min(1).max(64),
          disk: z
            .string()
            .regex(/^[a-z0-9]+$/)
            .optional(),
        })
        .strict(),
      req.body,
      "body",
    );
    const m = await ctx.store.getMachine(req.params.id);
    const image = await ctx.images.get(body.image);
    if (image.kind !== "host-rootfs") {
      throw invalid("IMAGE_KIND", `image ${image.name} is a ${image.kind}, not a host image`);
    }
    let jobId = "";
    await ctx.lifecycle.fire(m.id, "deploy", {
      actor: actorOf(res),
      reason: `image ${image.name}`,
      patch: { imageId: image.id, targetState: "host-ready" },
      also: async (tx) => {
        const job = await tx.job.create({
          data: {
            kind: "install-host",
            machineId: m.id,
            params: { image: image.name, disk: body.disk ?? null },
          },
        });
        jobId = job.id;
      },
    });
    await ensurePowered(ctx, m.id, actorOf(res));
    res
      .status(202)
      .location(`/v1/jobs/${jobId}`)
      .json({ job: jobId, machine: await ctx.store.getMachine(m.id) });
  });

  // Release: wipe the disk (from the host OS if it runs, then from the maintenance OS) and
  // return to ready.
  r.post("/:id/release", async (req, res) => {
    parse(z.object({}).strict(), req.body ?? {}, "body");
    const m = await ctx.store.getMachine(req.params.id);
    let jobId = "";
    await ctx.lifecycle.fire(m.id, "release", {
      actor: actorOf(res),
      patch: { targetState: "ready", imageId: null },
      also: async (tx) => {
        // A host's guests would go with its disk and their rows would point at nothing: refuse
        // until they are gone. Draining keeps placement from putting new ones there meanwhile.
        const guests = await tx.guest.findMany({
          where: { host: { machineId: m.id } },
          select: { name: true },
          orderBy: { name: "asc" },
        });
        if (guests.length) {
          const names = guests.map((g) => g.name);
          throw conflict(
            "HOST_HAS_GUESTS",
            `${m.name ?? m.id} runs guests ${names.join(", ")}: delete them (weft guests delete NAME) or scale their roles down before releasing it`,
            { guests: names },
          );
        }
        await tx.host.updateMany({ where: { machineId: m.id }, data: { state: "draining" } });
        await tx.job.updateMany({
          where: { machineId: m.id, state: { in: ["pending", "running"] } },
          data: { state: "cancelled", finishedAt: new Date() },
        });
        jobId = (await tx.job.create({ data: { kind: "wipe", machineId: m.id } })).id;
      },
    });
    await ensurePowered(ctx, m.id, actorOf(res));
    res
      .status(202)
      .location(`/v1/jobs/${jobId}`)
      .json({ job: jobId, machine: await ctx.store.getMachine(m.id) });
  });

  r.post("/:id/retry", async (req, res) => {
    parse(z.object({}).strict(), req.body ?? {}, "body");
    const m = await ctx.store.getMachine(req.params.id);
    await ctx.lifecycle.fire(m.id, "retry", { actor: actorOf(res) });
    await powerAction(ctx, m.id, "cycle", actorOf(res));
    res.status(202).json(await ctx.store.getMachine(m.id));
  });

  r.post("/:id/power", async (req, res) => {
    const { action } = parse(
      z.object({ action: z.enum(["on", "off", "cycle", "status"]) }).strict(),
      req.body,
      "body",
    );
    const m = await ctx.store.getMachine(req.params.id);
    const state = await powerAction(ctx, m.id, action, actorOf(res));
    res.json({ machine: m.name ?? m.id, action, state });
  });

  return r;
}

/** Runs a power action through the machine's driver and records it. */
async function powerAction(
  ctx: ApiContext,
  machineId: string,
  action: "on" | "off" | "cycle" | "status",
  actor: string,
) {
  const row = await ctx.db.machine.findUniqueOrThrow({ where: { id: machineId } });
  if (!row.powerDriver) throw invalid("NO_POWER_DRIVER", `machine ${row.name ?? row.id} has no power driver`);
  const driver = ctx.power.get(row.powerDriver);
  if (action === "status") return driver.status(row.powerParams);
  await driver[action](row.powerParams);
  ctx.log.info({ machineId, machine: row.name, action, actor }, "power action");
  await ctx.store.recordEvent({
    subjectType: "machine",
    subjectId: machineId,
    actor,
    message: `power ${action}`,
  });
  return driver.status(row.powerParams);
}

/** Powers a machine on when it has a driver and is off; a machine without one is left to its operator. */
async function ensurePowered(ctx: ApiContext, machineId: string, actor: string): Promise<void> {
  const row = await ctx.db.machine.findUniqueOrThrow({ where: { id: machineId } });
  if (!row.powerDriver) return;
  const driver = ctx.power.get(row.powerDriver);
  if ((await driver.status(row.powerParams)) === "off") await powerAction(ctx, machineId, "on", actor);
}
