// The HTTP boot service: per-machine iPXE scripts, maintenance kernel and initramfs, images
// and iPXE binaries. Unauthenticated, as firmware cannot hold a token; what a script hands
// out (a boot nonce) is single-use and worth nothing without the machine booting it.
import path from "node:path";
import { Router, type Response } from "express";
import type { MachineState } from "@weft/wire";
import { z } from "zod";
import { hashToken, newToken } from "../../auth/tokens.js";
import type { ApiContext } from "../../api/context.js";
import { parse } from "../../api/validate.js";
import { STATES } from "../../machines/states.js";
import { renderIpxe, type BootPlan } from "./script.js";

const Mac = z
  .string()
  .transform((s) => s.toLowerCase().replaceAll("-", ":"))
  .pipe(z.string().regex(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/));

export interface BootConfig {
  bootUrl: string;
  ipxeDir: string;
  kernelImage: string;
  initrdImage: string;
  cmdline: string;
}

export function bootRouter(ctx: ApiContext, cfg: BootConfig): Router {
  const r = Router();

  r.get("/ipxe", async (req, res) => {
    const { mac } = parse(z.object({ mac: Mac }).strict(), req.query, "query");
    const log = (res.locals["log"] as ApiContext["log"]).child({ mac });
    const nic = await ctx.db.nic.findUnique({ where: { mac }, include: { machine: true } });
    let plan: BootPlan;
    if (!nic) {
      // DHCP records PXE clients before they get here; an unknown MAC did not come through us.
      plan = { kind: "unavailable", reason: "unknown machine", retrySeconds: 30 };
    } else if (STATES[nic.machine.provisionState as MachineState]?.boots === "local-disk") {
      plan = { kind: "local-disk" };
    } else {
      const kernel = await ctx.db.image.findUnique({ where: { name: cfg.kernelImage } });
      const initrd = await ctx.db.image.findUnique({ where: { name: cfg.initrdImage } });
      if (!kernel || !initrd) {
        plan = { kind: "unavailable", reason: "maintenance OS images not imported", retrySeconds: 30 };
      } else {
        const nonce = newToken("nonce");
        await ctx.db.$transaction(async (tx) => {
          // Only the newest script's nonce is good: an old one leaked from a log is dead.
          await tx.credential.updateMany({
            where: { kind: "boot-nonce", machineId: nic.machineId, usedAt: null, revokedAt: null },
            data: { revokedAt: new Date() },
          });
          await tx.credential.create({
            data: { kind: "boot-nonce", name: "boot", machineId: nic.machineId, tokenHash: hashToken(nonce) },
          });
        });
        plan = {
          kind: "maintenance",
          kernelUrl: `${cfg.bootUrl}/boot/images/${kernel.name}`,
          initrdUrl: `${cfg.bootUrl}/boot/images/${initrd.name}`,
          controllerUrl: cfg.bootUrl,
          nonce,
          cmdline: cfg.cmdline,
        };
      }
    }
    log.info({ machineId: nic?.machineId, plan: plan.kind }, "served boot script");
    res.type("text/plain").send(renderIpxe(plan));
  });

  // Images by name, with Range requests (sendFile handles them) so downloads resume.
  r.get("/images/:name", async (req, res) => {
    const img = await ctx.images.get(req.params.name);
    sendConfined(res, path.dirname(ctx.images.fileOf(img)), path.basename(img.path), {
      "x-weft-sha256": img.sha256,
    });
  });

  // iPXE binaries for UEFI HTTP boot clients.
  r.get("/ipxe-bin/:file", (req, res) => {
    const file = req.params.file;
    if (!/^[a-z0-9._-]+\.(efi|kpxe|pxe|lkrn)$/.test(file)) {
      res.status(404).json({ type: "not_found", code: "FILE_NOT_FOUND", message: `no iPXE binary ${file}` });
      return;
    }
    sendConfined(res, cfg.ipxeDir, file, {});
  });

  return r;
}

function sendConfined(res: Response, root: string, file: string, headers: Record<string, string>): void {
  res.set(headers);
  res.sendFile(file, { root, dotfiles: "deny", acceptRanges: true, cacheControl: false }, (err?: Error) => {
    if (!err || res.headersSent) return;
    // send's errors carry the status to answer: 404 missing, 416 a range past the end, ...
    const status = (err as { status?: number }).status ?? 500;
    const body =
      status === 404
        ? { type: "not_found", code: "FILE_NOT_FOUND", message: `no file ${file}` }
        : status === 416
          ? {
              type: "invalid_request",
              code: "RANGE_NOT_SATISFIABLE",
              message: `the range is outside ${file}`,
            }
          : {
              type: status < 500 ? "invalid_request" : "internal",
              code: "FILE_SEND_FAILED",
              message: `cannot send ${file}`,
            };
    res.status(status).json(body);
  });
}
