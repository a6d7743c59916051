// The guest service: roles and their guests, from the API request to a running domain.
//
// Guest states (Guest.state), each change through #transition() which records an event:
//   pending   row written: host chosen, DIP claimed, nothing on the host yet
//   creating  base cached, overlay, config drive, domain being made on the host
//   running   the domain runs
//   deleting  teardown asked for; the row (and its DIP) goes when the host has let go
//   failed    something went wrong; lastError says what. A failed guest keeps its row (and
//             DIP) until deleted; its files on the host are removed as soon as possible.
//
// A create runs in the background after the API has answered; every step re-reads the row
// and stops (tearing down what it made) when the guest is being deleted meanwhile, so a role
// deleted while its instances start leaves nothing behind. reconcile() is the cleanup pass:
// for each reachable host it removes `weft-` domains and overlays that no live guest owns
// (a host that failed mid-create), and finishes deletions the host could not do at the time.
import crypto from "node:crypto";
import { WeftError, conflict, invalid, notFound } from "../errors.js";
import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import type { Guest, Host, Image, Role } from "../store/generated/client.js";
import type { Store } from "../store/store.js";
import { macForDip, renderDomainXml, type DomainPaths } from "./domain-xml.js";
import { domainName, type BaseImageRef, type HostDriver } from "./host-driver.js";
import type { Ipam } from "./ipam.js";
import type { VipRule } from "./nft.js";
import {
  DEFAULT_PLACEMENT,
  hostCapacity,
  placeMany,
  type HostCapacityView,
  type PlacementGuest,
  type PlacementHost,
  type PlacementOptions,
} from "./placement.js";
import { GuestSpec, memoryHardLimitMiB, normalizeSpec, type GuestSpecInput } from "./spec.js";

export type GuestState = "pending" | "creating" | "running" | "deleting" | "failed";

export interface GuestView {
  name: string;
  role: string | null;
  host: string | null;
  state: string;
  dip: string | null;
  image: string;
  vcpus: number;
  cpuMhz: number;
  memoryMiB: number;
  diskBytes: number;
  diskIops: number | null;
  diskBps: number | null;
  netInKBps: number;
  netOutKBps: number;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface RoleView {
  name: string;
  instances: number;
  vip: string | null;
  state: string;
  spec: GuestSpec;
  guests: Record<string, number>;
  createdAt: string;
}

export interface HostView {
  id: string;
  name: string;
  address: string | null;
  state: string;
  kvm: boolean;
  cpus: number;
  cpuMhz: number;
  capacity: HostCapacityView;
}

export type HostRow = Host & { machine: { name: string | null } };

export interface GuestServiceOptions {
  db: Db;
  store: Store;
  log: Logger;
  ipam: Ipam;
  /** The driver for a host; the caller may cache drivers per host. */
  driverFor: (host: HostRow) => HostDriver;
  placement?: PlacementOptions;
  /** Uplink capacity assumed for each host, KB/s (hosts do not report one yet). */
  hostNetKBps?: number;
  /** Boot guests from this kernel instead of their disk (tests, appliance images). */
  directBoot?: Pick<DomainPaths, "kernel" | "initrd" | "cmdline">;
  now?: () => number;
}

const ROLE_NAME = /^[a-z][a-z0-9-]{0,39}$/;
const MAX_INSTANCES = 200;
const GUEST_IMAGE_KINDS = new Set(["guest-base", "guest-disk"]);
const hostInclude = { machine: { select: { name: true } } } as const;
const hostName = (h: HostRow) => h.machine.name ?? h.machineId;
const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Uplink capacity assumed per host until hosts report one: 10 Gbit/s in KB/s. */
export const DEFAULT_HOST_NET_KBPS = 1_250_000;

function placementHost(h: HostRow, netKBps: number): PlacementHost {
  return {
    id: h.id,
    name: hostName(h),
    state: h.state,
    cpus: h.cpus,
    cpuMhz: h.cpuMhz,
    memoryMiB: h.memoryMiB,
    diskBytes: Number(h.diskBytes),
    kvm: h.kvm,
    netKBps,
  };
}

/** Every guest with a host holds its capacity until its row is gone, failed ones included. */
async function placedGuests(db: Db): Promise<PlacementGuest[]> {
  const rows = await db.guest.findMany({ where: { hostId: { not: null } } });
  return rows.map((g) => ({
    hostId: g.hostId!,
    roleId: g.roleId,
    vcpus: g.vcpus,
    cpuMhz: g.cpuMhz,
    memoryMiB: g.memoryMiB,
    diskBytes: Number(g.diskBytes),
    netInKBps: g.netInKBps,
    netOutKBps: g.netOutKBps,
  }));
}

/** Hosts with their total, used and free capacity (the API's host list). */
export async function listHostViews(
  db: Db,
  opts: { placement?: PlacementOptions; netKBps?: number } = {},
): Promise<HostView[]> {
  const [hosts, guests] = await Promise.all([
    db.host.findMany({ include: hostInclude, orderBy: { createdAt: "asc" } }),
    placedGuests(db),
  ]);
  return hosts.map((h) => ({
    id: h.id,
    name: hostName(h),
    address: h.address,
    state: h.state,
    kvm: h.kvm,
    cpus: h.cpus,
    cpuMhz: h.cpuMhz,
    capacity: hostCapacity(
      placementHost(h, opts.netKBps ?? DEFAULT_HOST_NET_KBPS),
      guests,
      opts.placement ?? DEFAULT_PLACEMENT,
    ),
  }));
}

/** Thrown inside a create when the guest is being deleted meanwhile. */
class Superseded extends Error {}

export class GuestService {
  readonly #o: GuestServiceOptions;
  readonly #builds = new Map<string, Promise<void>>();
  /** The tail of the VIP syncs, which run one after another. */
  #vipSyncs: Promise<void> = Promise.resolve();
  /** Hosts whose VIP table this controller has applied since it started. */
  readonly #vipsApplied = new Set<string>();
  /** Serialises placement within this controller so concurrent requests see each other. */
  #placing: Promise<unknown> = Promise.resolve();

  constructor(options: GuestServiceOptions) {
    this.#o = options;
  }

  get #db(): Db {
    return this.#o.db;
  }

  #now(): number {
    return this.#o.now?.() ?? Date.now();
  }

  // ---------------------------------------------------------------- views

  guestView(
    g: Guest & { role: { name: string } | null; host: HostRow | null; image: { name: string } },
  ): GuestView {
    return {
      name: g.name,
      role: g.role?.name ?? null,
      host: g.host ? hostName(g.host) : null,
      state: g.state,
      dip: g.dip,
      image: g.image.name,
      vcpus: g.vcpus,
      cpuMhz: g.cpuMhz,
      memoryMiB: g.memoryMiB,
      diskBytes: Number(g.diskBytes),
      diskIops: g.diskIops,
      diskBps: g.diskBps === null ? null : Number(g.diskBps),
      netInKBps: g.netInKBps,
      netOutKBps: g.netOutKBps,
      lastError: g.lastError,
      createdAt: g.createdAt.toISOString(),
      updatedAt: g.updatedAt.toISOString(),
    };
  }

  #guestInclude = {
    role: { select: { name: true } },
    host: { include: hostInclude },
    image: { select: { name: true } },
  } as const;

  async listGuests(q: { role?: string } = {}): Promise<GuestView[]> {
    const rows = await this.#db.guest.findMany({
      where: q.role === undefined ? {} : { role: { name: q.role } },
      include: this.#guestInclude,
      orderBy: [{ createdAt: "asc" }, { name: "asc" }],
    });
    return rows.map((g) => this.guestView(g));
  }

  async getGuest(name: string): Promise<GuestView> {
    const g = await this.#db.guest.findUnique({ where: { name }, include: this.#guestInclude });
    if (!g) throw notFound("guest", name);
    return this.guestView(g);
  }

  async #roleView(r: Role): Promise<RoleView> {
    const groups = await this.#db.guest.groupBy({
      by: ["state"],
      where: { roleId: r.id },
      _count: { _all: true },
    });
    return {
      name: r.name,
      instances: r.instances,
      vip: r.vip,
      state: r.state,
      spec: GuestSpec.parse(r.spec),
      guests: Object.fromEntries(groups.map((g) => [g.state, g._count._all])),
      createdAt: r.createdAt.toISOString(),
    };
  }

  async listRoles(): Promise<RoleView[]> {
    const rows = await this.#db.role.findMany({ orderBy: { name: "asc" } });
    return Promise.all(rows.map((r) => this.#roleView(r)));
  }

  async getRole(name: string): Promise<RoleView> {
    return this.#roleView(await this.#role(name));
  }

  async #role(name: string): Promise<Role> {
    const r = await this.#db.role.findUnique({ where: { name } });
    if (!r) throw notFound("role", name);
    return r;
  }

  listHosts(): Promise<HostView[]> {
    return listHostViews(this.#db, {
      placement: this.#o.placement ?? DEFAULT_PLACEMENT,
      netKBps: this.#o.hostNetKBps ?? DEFAULT_HOST_NET_KBPS,
    });
  }

  // ---------------------------------------------------------------- roles

  /**
   * Creates a role: checks the spec, places every instance (all or nothing), claims the VIP
   * and the DIPs, and starts the creates in the background. Answers with the role and its
   * pending guests.
   */
  async createRole(
    input: { name: string; instances: number; spec: GuestSpecInput },
    actor: string,
  ): Promise<{ role: RoleView; guests: GuestView[] }> {
    if (!ROLE_NAME.test(input.name))
      throw invalid(
        "ROLE_NAME_INVALID",
        "a role name is 1-40 lower-case letters, digits and '-', starting with a letter",
      );
    this.#checkInstances(input.instances);
    const spec = normalizeSpec(input.spec);
    const image = await this.#guestImage(spec.image);
    let role: Role;
    try {
      role = await this.#db.role.create({
        data: { name: input.name, instances: input.instances, spec: spec, state: "active" },
      });
    } catch (err) {
      if ((err as { code?: string }).code === "P2002")
        throw conflict("ROLE_EXISTS", `role ${input.name} exists`);
      throw err;
    }
    await this.#o.store.recordEvent({
      subjectType: "role",
      subjectId: role.id,
      actor,
      toState: "active",
      message: `role ${role.name} created with ${input.instances} instances`,
      data: { spec },
    });
    let guests: Guest[];
    try {
      await this.#o.ipam.claimVip(role.id);
      guests = await this.#addInstances(role, spec, image, input.instances, actor);
    } catch (err) {
      // Nothing was placed: the role does not stay half made.
      await this.#db.role.delete({ where: { id: role.id } }).catch(() => undefined);
      await this.#o.store.recordEvent({
        subjectType: "role",
        subjectId: role.id,
        actor,
        fromState: "active",
        message: `role ${role.name} not created: ${messageOf(err)}`,
      });
      throw err;
    }
    for (const g of guests) this.#startBuild(g.id, actor);
    return { role: await this.getRole(role.name), guests: await this.#views(guests) };
  }

  async scaleRole(
    name: string,
    instances: number,
    actor: string,
  ): Promise<{ role: RoleView; guests: GuestView[] }> {
    this.#checkInstances(instances);
    const role = await this.#role(name);
    if (role.state !== "active") throw conflict("ROLE_DELETING", `role ${name} is being deleted`);
    const spec = GuestSpec.parse(role.spec);
    const live = await this.#db.guest.findMany({
      where: { roleId: role.id, state: { not: "deleting" } },
      orderBy: { createdAt: "asc" },
    });
    await this.#db.role.update({ where: { id: role.id }, data: { instances } });
    await this.#o.store.recordEvent({
      subjectType: "role",
      subjectId: role.id,
      actor,
      message: `role ${name} scaled from ${role.instances} to ${instances} instances`,
      data: { from: role.instances, to: instances, live: live.length },
    });
    if (instances > live.length) {
      const image = await this.#guestImage(spec.image);
      const added = await this.#addInstances(role, spec, image, instances - live.length, actor);
      for (const g of added) this.#startBuild(g.id, actor);
    } else if (instances < live.length) {
      // Failed and unfinished instances go first, then the newest.
      const rank = (g: Guest) => (g.state === "failed" ? 0 : g.state === "running" ? 2 : 1);
      const victims = [...live]
        .sort((a, b) => rank(a) - rank(b) || b.createdAt.getTime() - a.createdAt.getTime())
        .slice(0, live.length - instances);
      await Promise.all(victims.map((g) => this.#delete(g.id, actor, "role scaled down")));
    }
    const r = await this.getRole(name);
    return { role: r, guests: await this.listGuests({ role: name }) };
  }

  /** Deletes a role and every guest of it, including guests still being created. */
  async deleteRole(name: string, actor: string): Promise<void> {
    const role = await this.#role(name);
    if (role.state !== "deleting") {
      await this.#db.role.update({ where: { id: role.id }, data: { state: "deleting" } });
      await this.#o.store.recordEvent({
        subjectType: "role",
        subjectId: role.id,
        actor,
        fromState: role.state,
        toState: "deleting",
        message: `deleting role ${name}`,
      });
    }
    const guests = await this.#db.guest.findMany({ where: { roleId: role.id } });
    const results = await Promise.allSettled(
      guests.map((g) => this.#delete(g.id, actor, `role ${name} deleted`)),
    );
    const failed = results.filter((r) => r.status === "rejected");
    const left = await this.#db.guest.count({ where: { roleId: role.id } });
    if (left > 0) {
      throw new WeftError(
        "unavailable",
        "ROLE_DELETE_INCOMPLETE",
        `role ${name}: ${left} guests could not be removed yet (${failed.map((f) => messageOf((f as PromiseRejectedResult).reason)).join("; ")}); the cleanup pass retries`,
      );
    }
    // The cleanup pass may have removed the emptied role meanwhile: then it recorded the event.
    const gone = await this.#db.role.deleteMany({ where: { id: role.id } });
    if (gone.count === 0) return;
    await this.#o.store.recordEvent({
      subjectType: "role",
      subjectId: role.id,
      actor,
      fromState: "deleting",
      message: `role ${name} deleted; VIP ${role.vip ?? "-"} released`,
    });
  }

  async deleteGuest(name: string, actor: string): Promise<void> {
    const g = await this.#db.guest.findUnique({ where: { name } });
    if (!g) throw notFound("guest", name);
    await this.#delete(g.id, actor, "deleted by request");
  }

  /** Waits for every create started by this service (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#builds.size) await Promise.allSettled([...this.#builds.values()]);
  }

  // ---------------------------------------------------------------- internals

  #checkInstances(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > MAX_INSTANCES)
      throw invalid(
        "INSTANCES_INVALID",
        `instances must be a whole number from 0 to ${MAX_INSTANCES}, got ${n}`,
      );
  }

  async #guestImage(name: string): Promise<Image> {
    const img = await this.#db.image.findUnique({ where: { name } });
    if (!img) throw notFound("image", name);
    if (!GUEST_IMAGE_KINDS.has(img.kind) || img.format !== "qcow2")
      throw invalid(
        "IMAGE_NOT_GUEST",
        `image ${name} is a ${img.kind} ${img.format}, not a qcow2 guest image`,
      );
    return img;
  }

  async #views(guests: Guest[]): Promise<GuestView[]> {
    return Promise.all(guests.map((g) => this.getGuest(g.name)));
  }

  #placementHost(h: HostRow): PlacementHost {
    return placementHost(h, this.#o.hostNetKBps ?? DEFAULT_HOST_NET_KBPS);
  }

  #placedGuests(): Promise<PlacementGuest[]> {
    return placedGuests(this.#db);
  }

  /** Places and records `count` new pending guests of a role (all or nothing). */
  #addInstances(role: Role, spec: GuestSpec, image: Image, count: number, actor: string): Promise<Guest[]> {
    const run = this.#placing.then(async () => {
      if (count === 0) return [];
      const hosts = await this.#db.host.findMany({ include: hostInclude });
      const placed = placeMany(
        hosts.map((h) => this.#placementHost(h)),
        await this.#placedGuests(),
        { roleId: role.id, ...spec },
        count,
        this.#o.placement ?? DEFAULT_PLACEMENT,
      );
      const out: Guest[] = [];
      try {
        for (const host of placed) {
          const g = await this.#o.ipam.claimDip((dip) => this.#insertGuest(role, spec, image, host.id, dip));
          out.push(g);
          await this.#o.store.recordEvent({
            subjectType: "guest",
            subjectId: g.id,
            actor,
            toState: "pending",
            message: `guest ${g.name} placed on ${host.name} with DIP ${g.dip}`,
            data: { role: role.name, host: host.name, dip: g.dip },
          });
        }
      } catch (err) {
        await this.#db.guest.deleteMany({ where: { id: { in: out.map((g) => g.id) } } });
        throw err;
      }
      return out;
    });
    this.#placing = run.catch(() => undefined);
    return run;
  }

  async #insertGuest(role: Role, spec: GuestSpec, image: Image, hostId: string, dip: string): Promise<Guest> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const names = new Set(
        (
          await this.#db.guest.findMany({
            where: { name: { startsWith: `${role.name}-` } },
            select: { name: true },
          })
        ).map((g) => g.name),
      );
      let i = 1;
      while (names.has(`${role.name}-${i}`)) i++;
      try {
        return await this.#db.guest.create({
          data: {
            name: `${role.name}-${i}`,
            hostId,
            roleId: role.id,
            imageId: image.id,
            vcpus: spec.vcpus,
            cpuMhz: spec.cpuMhz,
            memoryMiB: spec.memoryMiB,
            diskBytes: BigInt(spec.diskBytes),
            diskIops: spec.diskIops,
            diskBps: spec.diskBps === null ? null : BigInt(spec.diskBps),
            netInKBps: spec.netInKBps,
            netOutKBps: spec.netOutKBps,
            dip,
            state: "pending",
          },
        });
      } catch (err) {
        const e = err as { code?: string; meta?: unknown; message?: string };
        const onName =
          e.code === "P2002" && (JSON.stringify(e.meta ?? {}) + (e.message ?? "")).includes("name");
        if (!onName) throw err;
      }
    }
    throw new WeftError("unavailable", "GUEST_NAME_CONTENDED", `could not name a new guest of ${role.name}`);
  }

  /** Moves a guest between states if it is in one of `from`; records the event. */
  async #transition(
    guestId: string,
    from: GuestState[],
    to: GuestState,
    actor: string,
    message: string,
    extra: { lastError?: string | null; data?: unknown } = {},
  ): Promise<boolean> {
    const before = await this.#db.guest.findUnique({ where: { id: guestId }, select: { state: true } });
    if (!before || !from.includes(before.state as GuestState)) return false;
    const n = await this.#db.guest.updateMany({
      where: { id: guestId, state: before.state },
      data: { state: to, ...(extra.lastError === undefined ? {} : { lastError: extra.lastError }) },
    });
    if (n.count !== 1) return false;
    await this.#o.store.recordEvent({
      subjectType: "guest",
      subjectId: guestId,
      actor,
      fromState: before.state,
      toState: to,
      message,
      ...(extra.data === undefined ? {} : { data: extra.data }),
    });
    return true;
  }

  #startBuild(guestId: string, actor: string): void {
    const p = this.#build(guestId, actor)
      .catch((err) => this.#o.log.error({ err, guestId }, "guest create crashed"))
      .finally(() => this.#builds.delete(guestId));
    this.#builds.set(guestId, p);
  }

  async #build(guestId: string, actor: string): Promise<void> {
    const t0 = this.#now();
    const g0 = await this.#db.guest.findUnique({
      where: { id: guestId },
      include: { host: { include: hostInclude }, image: true, role: true },
    });
    if (!g0?.host || !g0.dip) return;
    const { host, image } = g0;
    if (
      !(await this.#transition(
        guestId,
        ["pending"],
        "creating",
        actor,
        `creating ${g0.name} on ${hostName(host)}`,
      ))
    )
      return;
    const driver = this.#o.driverFor(host);
    const log = this.#o.log.child({ guest: g0.name, host: hostName(host) });
    const steps: Record<string, number> = {};
    let last = t0;
    const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const cur = await this.#db.guest.findUnique({ where: { id: guestId }, select: { state: true } });
      if (cur?.state !== "creating") throw new Superseded();
      const r = await fn();
      const now = this.#now();
      steps[name] = now - last;
      last = now;
      return r;
    };
    const base: BaseImageRef = { name: image.name, sha256: image.sha256, size: Number(image.size) };
    try {
      const caps = await step("capabilities", () => driver.capabilities());
      await step("network", () => driver.networkEnsure());
      await step("base", () => driver.ensureBaseImage(base));
      await step("overlay", () => driver.createOverlay(g0.name, base, Number(g0.diskBytes)));
      await step("configDrive", () =>
        driver.writeConfigDrive({
          name: g0.name,
          dip: g0.dip!,
          prefix: this.#o.ipam.prefix,
          gateway: this.#o.ipam.config.gateway,
          role: g0.role?.name ?? null,
          vip: g0.role?.vip ?? null,
        }),
      );
      if (!caps.bandwidth)
        log.info({ reason: caps.bandwidthReason }, "bandwidth caps omitted from the domain");
      const xml = renderDomainXml(
        {
          name: domainName(g0.name),
          uuid: crypto.randomUUID(),
          vcpus: g0.vcpus,
          cpuMhz: g0.cpuMhz,
          memoryMiB: g0.memoryMiB,
          diskIops: g0.diskIops,
          diskBps: g0.diskBps === null ? null : Number(g0.diskBps),
          netInKBps: g0.netInKBps,
          netOutKBps: g0.netOutKBps,
          mac: macForDip(g0.dip),
        },
        {
          kvm: host.kvm,
          cpuMhz: host.cpuMhz,
          bandwidth: caps.bandwidth,
          hardLimitInXml: caps.memlock,
          network: driver.network,
        },
        { ...driver.paths(g0.name), ...this.#o.directBoot },
      );
      const live = caps.memlock
        ? {}
        : { liveHardLimitKiB: memoryHardLimitMiB(g0.memoryMiB, host.kvm) * 1024 };
      await step("domain", () => driver.defineAndStart(g0.name, xml, live));
      const ms = this.#now() - t0;
      const ok = await this.#transition(
        guestId,
        ["creating"],
        "running",
        actor,
        `guest ${g0.name} running (${ms} ms)`,
        {
          lastError: null,
          data: {
            createMs: ms,
            steps,
            bandwidth: caps.bandwidth,
            bandwidthReason: caps.bandwidthReason,
            memlock: caps.memlock,
          },
        },
      );
      if (!ok) throw new Superseded();
      log.info({ ms, steps }, "guest running");
      if (g0.roleId) await this.#syncVip(g0.roleId, [host.id]);
    } catch (err) {
      if (err instanceof Superseded) {
        // Deleted meanwhile: whoever deletes waits for this build, then tears down.
        log.info("create stopped: the guest is being deleted");
        return;
      }
      const reason = messageOf(err);
      log.warn({ err }, "guest create failed");
      await this.#transition(guestId, ["creating"], "failed", actor, `guest ${g0.name} failed: ${reason}`, {
        lastError: reason,
        data: { ms: this.#now() - t0, steps },
      });
      // Leave no half-made domain or overlay; if the host is gone, reconcile() does it later.
      await driver
        .destroy(g0.name)
        .catch((e2) => log.warn({ err: e2 }, "cleanup after a failed create failed"));
    }
  }

  /** Tears a guest down and removes its row (freeing its DIP). Idempotent. */
  async #delete(guestId: string, actor: string, why: string): Promise<void> {
    const g = await this.#db.guest.findUnique({
      where: { id: guestId },
      include: { host: { include: hostInclude } },
    });
    if (!g) return;
    if (g.state !== "deleting")
      await this.#transition(
        guestId,
        ["pending", "creating", "running", "failed"],
        "deleting",
        actor,
        `deleting ${g.name}: ${why}`,
      );
    // A create in flight here stops at its next step; wait for it so nothing is made after this.
    await this.#builds.get(guestId);
    if (g.host) {
      try {
        await this.#o.driverFor(g.host).destroy(g.name);
      } catch (err) {
        const reason = `host ${hostName(g.host)} could not remove ${g.name}: ${messageOf(err)}`;
        await this.#db.guest.update({ where: { id: guestId }, data: { lastError: reason } });
        throw new WeftError("unavailable", "HOST_UNREACHABLE", `${reason}; the cleanup pass retries`, {
          cause: err,
        });
      }
    }
    await this.#db.guest.delete({ where: { id: guestId } });
    await this.#o.store.recordEvent({
      subjectType: "guest",
      subjectId: guestId,
      actor,
      fromState: "deleting",
      message: `guest ${g.name} deleted; DIP ${g.dip ?? "-"} released`,
    });
    if (g.roleId && g.hostId) await this.#syncVip(g.roleId, [g.hostId]);
  }

  /**
   * Brings the VIP table of each affected host up to date: the hosts of the role's guests and
   * `alsoHosts` (one that just lost a guest).
   */
  #syncVip(roleId: string, alsoHosts: string[]): Promise<void> {
    return this.#serialVips(async () => {
      const roleGuests = await this.#db.guest.findMany({ where: { roleId }, select: { hostId: true } });
      await this.#applyVips([
        ...alsoHosts,
        ...roleGuests.map((g) => g.hostId).filter((h): h is string => h !== null),
      ]);
    });
  }

  /**
   * VIP syncs run one at a time and each reads the store when it starts, so a table computed
   * before a guest changed state never lands after one computed after it (two guests of a role
   * coming up on two hosts at once did exactly that).
   */
  #serialVips<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#vipSyncs.then(fn);
    this.#vipSyncs = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Applies each host's whole VIP table; returns the hosts it could not update. */
  async #applyVips(hostIds: Iterable<string>): Promise<string[]> {
    const failed: string[] = [];
    for (const hostId of new Set(hostIds)) {
      const host = await this.#db.host.findUnique({ where: { id: hostId }, include: hostInclude });
      if (!host) continue;
      const rules = await this.#hostVipRules(hostId);
      try {
        await this.#o.driverFor(host).setVips(rules);
      } catch (err) {
        failed.push(hostId);
        this.#o.log.warn(
          { err, host: hostName(host), vips: rules.map((r) => r.vip) },
          "VIP rules not updated",
        );
      }
    }
    return failed;
  }

  /**
   * A host's whole VIP table from the store: every active role with guests running there,
   * balanced across that role's running DIPs on this host (a DIP is reachable only through its
   * own host's bridge). Rendered whole, it needs no memory of what was applied before, so a
   * restarted controller cannot drop another role's VIP from the host.
   */
  async #hostVipRules(hostId: string): Promise<VipRule[]> {
    const running = await this.#db.guest.findMany({
      where: { hostId, state: "running", dip: { not: null }, role: { state: "active", vip: { not: null } } },
      include: { role: true },
      orderBy: { dip: "asc" },
    });
    const byVip = new Map<string, VipRule>();
    for (const g of running) {
      const role = g.role!;
      const spec = GuestSpec.safeParse(role.spec);
      if (!spec.success || !spec.data.ports.length) continue;
      const rule = byVip.get(role.vip!) ?? { vip: role.vip!, ports: spec.data.ports, dips: [] };
      rule.dips.push(g.dip!);
      byVip.set(rule.vip, rule);
    }
    return [...byVip.values()];
  }

  /**
   * The cleanup pass. For each ready host: removes `weft-` domains and overlays no live guest
   * owns, finishes deletions, and tears down the files of failed guests.
   */
  async reconcile(actor = "controller"): Promise<{ removed: string[]; errors: string[] }> {
    const removed: string[] = [];
    const errors: string[] = [];
    const hosts = await this.#db.host.findMany({ where: { state: "ready" }, include: hostInclude });
    for (const host of hosts) {
      const driver = this.#o.driverFor(host);
      try {
        const inv = await driver.inventory();
        const rows = await this.#db.guest.findMany({ where: { hostId: host.id } });
        const byName = new Map(rows.map((g) => [g.name, g]));
        for (const name of new Set([...inv.domains, ...inv.overlays])) {
          const g = byName.get(name);
          if (g && (g.state === "running" || this.#builds.has(g.id))) continue;
          if (g && (g.state === "pending" || g.state === "creating")) continue; // another controller's create
          await driver.destroy(name);
          removed.push(`${hostName(host)}/${name}`);
        }
        for (const g of rows.filter((r) => r.state === "deleting" && !this.#builds.has(r.id))) {
          await this.#delete(g.id, actor, "cleanup pass");
        }
        // Once per host after a start: the table on the host may be older than the store (a
        // controller stopped between a guest's change and its VIP sync).
        if (!this.#vipsApplied.has(host.id)) {
          const failed = await this.#serialVips(() => this.#applyVips([host.id]));
          if (failed.length) throw new Error("its VIP table was not applied");
          this.#vipsApplied.add(host.id);
        }
      } catch (err) {
        errors.push(`${hostName(host)}: ${messageOf(err)}`);
      }
    }
    // Roles whose deletion had to wait for a host.
    for (const role of await this.#db.role.findMany({ where: { state: "deleting" } })) {
      if ((await this.#db.guest.count({ where: { roleId: role.id } })) > 0) continue;
      if ((await this.#db.role.deleteMany({ where: { id: role.id } })).count === 0) continue;
      await this.#o.store.recordEvent({
        subjectType: "role",
        subjectId: role.id,
        actor,
        fromState: "deleting",
        message: `role ${role.name} deleted by the cleanup pass; VIP ${role.vip ?? "-"} released`,
      });
    }
    if (removed.length)
      await this.#o.store.recordEvent({
        subjectType: "host",
        actor,
        message: `cleanup pass removed ${removed.length} leftover guests`,
        data: { removed },
      });
    return { removed, errors };
  }
}
