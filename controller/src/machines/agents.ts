// The controller's side of the agent protocol (wire/src/agent.ts): nonce exchange, command
// dispatch on heartbeat, command reports that drive the lifecycle, host registration.
import net from "node:net";
import {
  GuestNetworkParams,
  type Command,
  type CommandReport,
  type EnlistRequest,
  type HostRegisterRequest,
  type Inventory,
  type MachineState,
} from "@weft/wire";
import { WeftError, conflict } from "../errors.js";
import { hashToken, newToken, type Principal } from "../auth/tokens.js";
import type { Db } from "../store/db.js";
import type { Prisma } from "../store/generated/client.js";
import type { Store } from "../store/store.js";
import type { Lifecycle } from "./lifecycle.js";
import { GUEST_NETWORK_JOB, type HostSetup, type LibvirtProbe } from "../guests/host-setup.js";

export const HEARTBEAT_SECONDS = 5;
const NONCE_TTL_MS = 3600_000;

export class Agents {
  constructor(
    private readonly db: Db,
    private readonly store: Store,
    private readonly lifecycle: Lifecycle,
    private readonly bootUrl: string,
    /** TLS for hosts' libvirtd and their guest networking; without it hosts get neither. */
    private readonly hostSetup?: HostSetup,
    /** Added to the kernel command line of every host installed from here. */
    private readonly hostKernelArgs: readonly string[] = [],
  ) {}

  /** When each unreachable host's libvirt was last tried (at most one check per 30 s). */
  private readonly probedAt = new Map<string, number>();

  /** Exchanges a boot nonce for the machine's agent token (once), and records its inventory. */
  async enlist(req: EnlistRequest, remote: string): Promise<{ machineId: string; token: string }> {
    const cred = await this.db.credential.findUnique({ where: { tokenHash: hashToken(req.nonce) } });
    const refuse = async (code: string, message: string, machineId: string | null) => {
      await this.store.recordEvent({
        subjectType: "machine",
        subjectId: machineId,
        actor: `agent@${remote}`,
        message: `refused enlistment: ${message}`,
      });
      return new WeftError("unauthorized", code, message);
    };
    if (!cred || cred.kind !== "boot-nonce" || !cred.machineId)
      throw await refuse("NONCE_INVALID", "unknown boot nonce", null);
    if (cred.usedAt)
      throw await refuse("NONCE_USED", "this boot nonce was already exchanged", cred.machineId);
    if (cred.revokedAt)
      throw await refuse("NONCE_REVOKED", "a newer boot script replaced this nonce", cred.machineId);
    if (Date.now() - cred.createdAt.getTime() > NONCE_TTL_MS) {
      throw await refuse("NONCE_EXPIRED", "this boot nonce is too old", cred.machineId);
    }
    const machineId = cred.machineId;
    await this.checkIdentity(machineId, req.inventory, remote);

    const token = newToken("agent");
    const m = await this.lifecycle.withLock(machineId, async () => {
      await this.db.$transaction(async (tx) => {
        // Single use even when two agents race with the same nonce.
        const used = await tx.credential.updateMany({
          where: { id: cred.id, usedAt: null },
          data: { usedAt: new Date() },
        });
        if (used.count !== 1)
          throw new WeftError("unauthorized", "NONCE_USED", "this boot nonce was already exchanged");
        await tx.credential.updateMany({
          where: { kind: "agent", machineId, revokedAt: null },
          data: { revokedAt: new Date() },
        });
        await tx.credential.create({
          data: { kind: "agent", name: "maintenance", machineId, tokenHash: hashToken(token) },
        });
        await this.saveInventory(tx, machineId, req.inventory);
        // The maintenance OS lost whatever it was running: hand those commands out again.
        await tx.job.updateMany({ where: { machineId, state: "running" }, data: { state: "pending" } });
      });
      return this.db.machine.findUniqueOrThrow({ where: { id: machineId } });
    });
    const actor = `agent:${machineId}`;
    const state = m.provisionState as MachineState;
    if (state === "discovered" || state === "ready" || state === "failed") {
      await this.lifecycle.fire(machineId, "boot", { actor });
      await this.lifecycle.fire(machineId, "enlisted", {
        actor,
        data: { disks: req.inventory.disks.length },
      });
    } else if (state === "enlisting") {
      await this.lifecycle.fire(machineId, "enlisted", { actor });
    } else if (state === "releasing" || state === "deploying") {
      await this.lifecycle.fire(machineId, "boot", {
        actor,
        // Released from a host: the host only made its disk unbootable; wipe it here.
        also: async (tx) => {
          if (state !== "releasing") return;
          const open = await tx.job.count({
            where: { machineId, kind: "wipe", state: { in: ["pending", "running"] } },
          });
          if (!open) await tx.job.create({ data: { kind: "wipe", machineId } });
        },
      });
    } else {
      throw conflict("INVALID_TRANSITION", `machine is ${state}: it should not boot the maintenance OS now`);
    }
    return { machineId, token };
  }

  /** Nothing a client says of itself is trusted alone: its MACs must be the machine's. */
  private async checkIdentity(machineId: string, inv: Inventory, remote: string): Promise<void> {
    const nics = await this.db.nic.findMany({ where: { machineId }, select: { mac: true } });
    const reported = new Set(inv.nics.map((n) => n.mac));
    const other = inv.system.uuid
      ? await this.db.machine.findFirst({
          where: { uuid: inv.system.uuid, NOT: { id: machineId } },
          select: { id: true },
        })
      : null;
    if (!nics.some((n) => reported.has(n.mac)) || other) {
      await this.store.recordEvent({
        subjectType: "machine",
        subjectId: machineId,
        actor: `agent@${remote}`,
        message: "refused enlistment: the inventory does not match the machine",
        data: { reported: [...reported], uuid: inv.system.uuid },
      });
      throw new WeftError(
        "forbidden",
        "IDENTITY_MISMATCH",
        "the reported hardware does not belong to this machine",
      );
    }
  }

  private async saveInventory(
    tx: Prisma.TransactionClient,
    machineId: string,
    inv: Inventory,
  ): Promise<void> {
    await tx.machine.update({
      where: { id: machineId },
      data: {
        inventory: inv as object,
        firmware: inv.firmware,
        ...(inv.system.uuid ? { uuid: inv.system.uuid } : {}),
        ...(inv.system.serial ? { serial: inv.system.serial } : {}),
      },
    });
    for (const n of inv.nics) {
      await tx.nic.upsert({
        where: { mac: n.mac },
        create: { machineId, mac: n.mac, name: n.name },
        update: { name: n.name },
      });
    }
  }

  /** Hands out the machine's pending commands (marking them running). */
  async heartbeat(p: Principal, remote: string | null = null): Promise<Command[]> {
    const machineId = p.machineId!;
    const jobs = await this.db.job.findMany({
      where: { machineId, state: "pending" },
      orderBy: { createdAt: "asc" },
    });
    const commands: Command[] = [];
    for (const job of jobs) {
      const cmd = await this.commandFor(job, p, remote);
      if (!cmd) continue;
      await this.db.job.update({
        where: { id: job.id },
        data: { state: "running", startedAt: job.startedAt ?? new Date(), attempts: { increment: 1 } },
      });
      commands.push(cmd);
    }
    return commands;
  }

  /**
   * The addresses a machine's host will have: its NICs' bound DHCP leases (the host asks with
   * the same client identifier as the maintenance OS, so it keeps them), else where it calls from.
   */
  private async hostAddresses(machineId: string, remote: string | null): Promise<string[]> {
    const macs = (await this.db.nic.findMany({ where: { machineId }, select: { mac: true } })).map(
      (n) => n.mac,
    );
    const leases = await this.db.lease.findMany({
      where: { mac: { in: macs }, state: "bound", expiresAt: { gt: new Date() } },
      select: { ip: true },
    });
    const ips = leases.map((l) => l.ip);
    const from = remote?.replace(/^::ffff:/, "") ?? null;
    if (!ips.length && from && net.isIP(from) && from !== "127.0.0.1" && from !== "::1") ips.push(from);
    return [...new Set(ips)];
  }

  private async commandFor(
    job: Prisma.JobGetPayload<object>,
    p: Principal,
    remote: string | null,
  ): Promise<Command | null> {
    const params = (job.params ?? {}) as Record<string, unknown>;
    switch (job.kind) {
      case "install-host": {
        if (p.name !== "maintenance") return null;
        const machine = await this.db.machine.findUniqueOrThrow({
          where: { id: job.machineId! },
          include: { image: true },
        });
        if (!machine.image) throw conflict("NO_IMAGE", "the deploy lost its image");
        // The host's own credential is made at dispatch (never stored in clear in the job).
        const hostToken = newToken("agent");
        await this.db.$transaction(async (tx) => {
          await tx.credential.updateMany({
            where: { kind: "agent", name: "host", machineId: machine.id, revokedAt: null },
            data: { revokedAt: new Date() },
          });
          await tx.credential.create({
            data: { kind: "agent", name: "host", machineId: machine.id, tokenHash: hashToken(hostToken) },
          });
        });
        const hostname = machine.name ?? `host-${machine.id.slice(-6)}`;
        const tls = this.hostSetup
          ? await this.hostSetup.tlsFor(hostname, await this.hostAddresses(machine.id, remote))
          : undefined;
        return {
          id: job.id,
          kind: "install-host",
          params: {
            ...(tls ? { tls } : {}),
            ...(this.hostKernelArgs.length > 0 ? { kernelArgs: [...this.hostKernelArgs] } : {}),
            image: {
              name: machine.image.name,
              url: `${this.bootUrl}/boot/images/${machine.image.name}`,
              sha256: machine.image.sha256,
              size: Number(machine.image.size),
              format: "ext4.gz",
            },
            disk: typeof params["disk"] === "string" ? params["disk"] : null,
            host: {
              machineId: machine.id,
              hostname,
              controllerUrl: this.bootUrl,
              token: hostToken,
            },
          },
        };
      }
      case "wipe":
        return { id: job.id, kind: "wipe", params: { disks: null } };
      case "reboot":
        return { id: job.id, kind: "reboot", params: {} };
      case GUEST_NETWORK_JOB: {
        if (p.name !== "host") return null;
        const parsed = GuestNetworkParams.safeParse(params);
        if (!parsed.success) return null;
        return { id: job.id, kind: "guest-network", params: parsed.data };
      }
      default:
        return null;
    }
  }

  /** A command's progress or result; results drive the lifecycle. */
  async report(p: Principal, jobId: string, r: CommandReport): Promise<void> {
    const job = await this.db.job.findUnique({ where: { id: jobId } });
    if (!job || !p.machineId || job.machineId !== p.machineId) {
      // Reporting for a job of another machine is refused the same as a job that does not exist.
      throw new WeftError("not_found", "JOB_NOT_FOUND", `no command ${jobId} for this machine`);
    }
    if (job.state === "succeeded" || job.state === "failed" || job.state === "cancelled") {
      throw conflict("JOB_FINISHED", `command ${jobId} already ${job.state}`);
    }
    const machineId = p.machineId;
    const actor = `agent:${machineId}`;
    await this.db.$transaction(async (tx) => {
      if (r.stage) {
        const last = await tx.jobStep.findFirst({ where: { jobId }, orderBy: { seq: "desc" } });
        if (last?.name !== r.stage) {
          if (last && last.state === "running") {
            await tx.jobStep.update({
              where: { id: last.id },
              data: { state: "succeeded", finishedAt: new Date(), progress: 1 },
            });
          }
          await tx.jobStep.create({
            data: {
              jobId,
              seq: (last?.seq ?? 0) + 1,
              name: r.stage,
              state: "running",
              startedAt: new Date(),
            },
          });
          await this.store.recordEvent(
            {
              subjectType: "machine",
              subjectId: machineId,
              actor,
              message: `${job.kind}: ${r.stage}${r.message ? ` (${r.message})` : ""}`,
            },
            tx,
          );
        }
      }
      const done = r.state !== "RUNNING";
      await tx.job.update({
        where: { id: jobId },
        data: {
          state: r.state === "RUNNING" ? "running" : r.state === "SUCCEEDED" ? "succeeded" : "failed",
          ...(r.progress === undefined ? {} : { progress: r.progress }),
          ...(r.state === "SUCCEEDED" ? { progress: 1 } : {}),
          ...(done ? { finishedAt: new Date() } : {}),
          ...(r.error ? { error: `${r.error.code}: ${r.error.message}` } : {}),
        },
      });
      if (done) {
        await tx.jobStep.updateMany({
          where: { jobId, state: "running" },
          data: { state: r.state === "SUCCEEDED" ? "succeeded" : "failed", finishedAt: new Date() },
        });
      }
    });
    // A host that could not apply guest networking stays a host; the caller hears of it.
    if (job.kind === GUEST_NETWORK_JOB) return;
    if (r.state === "FAILED") {
      const reason = r.error ? `${r.error.code}: ${r.error.message}` : (r.message ?? `${job.kind} failed`);
      await this.lifecycle.fire(machineId, "fail", { actor, reason });
    } else if (r.state === "SUCCEEDED" && job.kind === "install-host") {
      await this.lifecycle.fire(machineId, "installed", {
        actor,
        // The maintenance token dies with the maintenance OS; only the host token is good now.
        also: async (tx) => {
          await tx.credential.updateMany({
            where: { kind: "agent", name: "maintenance", machineId, revokedAt: null },
            data: { revokedAt: new Date() },
          });
        },
      });
    } else if (r.state === "SUCCEEDED" && job.kind === "wipe") {
      const m = await this.db.machine.findUniqueOrThrow({ where: { id: machineId } });
      if (m.provisionState !== "releasing") return;
      if (p.name === "host") {
        // The host made its disk unbootable and reboots: the maintenance OS it PXE-boots into
        // does the real wipe (enlist hands it a new wipe command), so the machine stays releasing.
        await this.store.recordEvent({
          subjectType: "machine",
          subjectId: machineId,
          actor,
          message: "host disk made unbootable; rebooting into the maintenance OS to wipe",
        });
        await this.db.host.deleteMany({ where: { machineId } });
        await this.db.credential.updateMany({
          where: { kind: "agent", name: "host", machineId, revokedAt: null },
          data: { revokedAt: new Date() },
        });
      } else {
        await this.lifecycle.fire(machineId, "wiped", { actor });
      }
    }
  }

  /** The host OS agent registers: a Host row with its capacity, and the machine is host-ready. */
  async registerHost(p: Principal, req: HostRegisterRequest): Promise<void> {
    if (p.name !== "host")
      throw new WeftError("forbidden", "NOT_A_HOST_TOKEN", "only a host agent's token registers a host");
    const machineId = p.machineId!;
    const c = req.capacity;
    // The controller reaches libvirt over TLS; a host it cannot reach takes no guests.
    const tls: LibvirtProbe | null =
      this.hostSetup && req.address ? await this.hostSetup.probe(req.address) : null;
    if (tls) this.probedAt.set(machineId, Date.now());
    const data = {
      address: req.address,
      libvirtUri: tls?.uri ?? req.libvirt.uri,
      cpus: c.cpus,
      cpuMhz: c.cpuMhz,
      memoryMiB: c.memoryMiB,
      diskBytes: BigInt(c.diskBytes),
      kvm: c.kvm,
      state: tls && !tls.ok ? "unreachable" : "ready",
      lastHeartbeatAt: new Date(),
    };
    await this.db.host.upsert({ where: { machineId }, create: { machineId, ...data }, update: data });
    if (this.hostSetup) await this.hostSetup.queue(machineId, null);
    await this.lifecycle.fire(machineId, "host-registered", {
      actor: `agent:${machineId}`,
      data: {
        ...c,
        libvirt: req.libvirt,
        ...(tls ? { libvirtTls: tls } : {}),
        ...(req.guests ? { guests: req.guests } : {}),
      },
    });
  }

  /** Tries an unreachable host's libvirt again; it takes guests once it answers. */
  private async recheck(machineId: string): Promise<void> {
    const host = await this.db.host.findUnique({ where: { machineId } });
    if (!this.hostSetup || host?.state !== "unreachable" || !host.address) return;
    const last = this.probedAt.get(machineId) ?? 0;
    if (Date.now() - last < 30_000) return;
    this.probedAt.set(machineId, Date.now());
    const tls = await this.hostSetup.probe(host.address);
    if (!tls.ok) return;
    await this.db.host.updateMany({ where: { machineId, state: "unreachable" }, data: { state: "ready" } });
    await this.store.recordEvent({
      subjectType: "host",
      subjectId: host.id,
      actor: "controller",
      fromState: "unreachable",
      toState: "ready",
      message: `libvirt answers over TLS (${tls.version ?? "?"})`,
      data: { libvirtTls: tls },
    });
  }

  async hostHeartbeat(p: Principal): Promise<void> {
    await this.db.host.updateMany({
      where: { machineId: p.machineId! },
      data: { lastHeartbeatAt: new Date() },
    });
    void this.recheck(p.machineId!).catch(() => undefined);
  }
}
