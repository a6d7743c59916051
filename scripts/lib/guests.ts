// A role on installed lab hosts, checked from the provisioning network the way a client and an
// operator would see it: the VIP answers from every guest in turn, the guest sees its memory,
// its CPU and bandwidth caps hold, and deleting one guest leaves the other serving. Shared by
// the nightly test and the lab test of guests.
//
// The VIP must reach a host: the lab netns routes it to the hosts that run the role's guests
// (what a router or ECMP would do in a real network; Weft does not announce VIPs yet).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { Client } from "../../controller/src/cli/client.js";
import type { EventView } from "@weft/wire";
import type { GuestView, HostView, RoleView } from "../../controller/src/guests/service.js";
import type { GuestSpecInput } from "../../controller/src/guests/spec.js";

const pexec = promisify(execFile);

export interface RoleCheckOptions {
  client: Client;
  /** The lab's namespace: the provisioning network the checks run from. */
  netns: string;
  /** The controller's libvirt client identity (pkipath=) for reading the hosts' counters. */
  pkiClientDir: string;
  role?: string;
  instances?: number;
  memoryMiB?: number;
  /** The CPU cap as a share of one host core. */
  cpuShare?: number;
  capMbit?: number;
  timeoutMs?: number;
  log?: (msg: string) => void;
}

export interface GuestTiming {
  name: string;
  host: string;
  dip: string;
  /** From the create request to the guest seen running through the API. */
  createToRunningS: number | null;
  /** What the controller measured from the start of the create to the domain running. */
  controllerCreateS: number | null;
  controllerSteps: Record<string, number> | null;
  /** From the create request to the guest's first answer on the VIP. */
  createToServingS: number | null;
}

export interface RoleReport {
  role: string;
  vip: string;
  hosts: { name: string; address: string; kvm: boolean; cpuMhz: number; bandwidth: boolean | null }[];
  guests: GuestTiming[];
  /** Answers to consecutive requests on the VIP once every guest served. */
  rotation: string[];
  memory: { specMiB: number; memTotalMiB: number };
  cpu: { guest: string; quota: number; measured: number }[];
  /** The best of the runs each way, and every run. */
  bandwidth: { capMbit: number; inMbit: number; outMbit: number; runs: { in: number[]; out: number[] } };
  afterDelete: { deleted: string; answers: string[] };
  /** A guest created by scaling back up, on a host with the base already cached. */
  cachedCreate: GuestTiming;
  cleanedUp: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function inNs(netns: string, cmd: string, args: string[], timeoutMs = 30_000) {
  return pexec("ip", ["netns", "exec", netns, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
}

/** One GET on the VIP from the provisioning network; null when nothing answered. */
export async function curl(netns: string, url: string, timeoutS = 3): Promise<string | null> {
  try {
    const r = await inNs(netns, "curl", ["-sf", "--max-time", String(timeoutS), url], (timeoutS + 5) * 1000);
    return r.stdout.trim();
  } catch {
    return null;
  }
}

/** Routes the VIP in the lab netns to the hosts running the role (ECMP by port when several). */
export async function routeVip(netns: string, vip: string, via: string[]): Promise<void> {
  await inNs(netns, "sysctl", ["-qw", "net.ipv4.fib_multipath_hash_policy=1"]);
  await inNs(netns, "ip", ["route", "del", `${vip}/32`]).catch(() => undefined);
  if (!via.length) return;
  const hops = via.length === 1 ? ["via", via[0]!] : via.flatMap((a) => ["nexthop", "via", a]);
  await inNs(netns, "ip", ["route", "replace", `${vip}/32`, ...hops]);
}

/** Total vCPU time of a domain in ns, read from its host over libvirt TLS. */
async function vcpuTimeNs(o: RoleCheckOptions, address: string, guest: string): Promise<number> {
  const uri = `qemu+tls://${address}/system?pkipath=${o.pkiClientDir}`;
  const r = await inNs(o.netns, "virsh", ["-c", uri, "-q", "domstats", "--vcpu", `weft-${guest}`]);
  let sum = 0;
  for (const m of r.stdout.matchAll(/vcpu\.\d+\.time=(\d+)/g)) sum += Number(m[1]);
  if (!sum) throw new Error(`no vcpu time for ${guest}: ${r.stdout}`);
  return sum;
}

async function iperf(netns: string, vip: string, reverse: boolean): Promise<number> {
  const args = ["-c", vip, "-t", "8", "-O", "2", "-J", ...(reverse ? ["-R"] : [])];
  let why = "";
  // The first connection right after a VIP change can find the server not ready: try again.
  for (let attempt = 0; attempt < 3; attempt++) {
    const r = await inNs(netns, "iperf3", args, 60_000).catch((err: { stdout?: string }) => ({
      stdout: err.stdout ?? "{}",
    }));
    const j = JSON.parse(r.stdout || "{}") as {
      error?: string;
      end?: { sum_received?: { bits_per_second: number } };
    };
    const bps = j.end?.sum_received?.bits_per_second;
    if (bps !== undefined && !j.error) return bps / 1e6;
    why = j.error ?? "no result";
    await sleep(2000);
  }
  throw new Error(`iperf3 ${args.join(" ")}: ${why}`);
}

/** The addresses of the hosts the given guests run on, each once. */
function hostAddresses(guests: Map<string, GuestTiming>, addressOf: (host: string) => string): string[] {
  return [...new Set([...guests.values()].map((t) => addressOf(t.host)))].sort();
}

/** The hosts that take guests (reachable over libvirt TLS); refuses when there is none. */
export async function readyHosts(c: Client): Promise<HostView[]> {
  const hosts = (await c.get<{ items: HostView[] }>("/v1/hosts")).items.filter((h) => h.state === "ready");
  if (!hosts.length) throw new Error("no host is ready (reachable over libvirt TLS)");
  return hosts;
}

export interface DeployRoleOptions {
  client: Client;
  /** The ready hosts (readyHosts()), to route the VIP to. */
  hosts: HostView[];
  /** The lab's namespace: where the VIP is routed and asked. */
  netns: string;
  role: string;
  instances: number;
  spec: GuestSpecInput;
  timeoutMs: number;
  log?: (msg: string) => void;
  /** Called every poll with the role's guests and the names already seen on the VIP. */
  onPoll?: (guests: GuestView[], serving: ReadonlySet<string>) => void;
}

export interface DeployedRole {
  vip: string;
  /** The role existed already (a second run); it was not created again. */
  reused: boolean;
  timings: Map<string, GuestTiming>;
  addressOf: (host: string) => string;
}

/**
 * Creates the role (or takes the one that exists), routes its VIP in the lab and waits until
 * every guest runs and has answered on the VIP. The timings are from the create request.
 */
export async function deployRole(o: DeployRoleOptions): Promise<DeployedRole> {
  const log = o.log ?? (() => undefined);
  const c = o.client;
  const deadline = Date.now() + o.timeoutMs;
  const addressOf = (host: string) => o.hosts.find((h) => h.name === host)?.address ?? "";

  const t0 = Date.now();
  const existing = (await c.get<{ items: RoleView[] }>("/v1/roles")).items.find((r) => r.name === o.role);
  const vip = existing
    ? existing.vip
    : (
        await c.request<{ role: RoleView; guests: GuestView[] }>("POST", "/v1/roles", {
          name: o.role,
          instances: o.instances,
          spec: o.spec,
        })
      ).role.vip;
  if (!vip) throw new Error(`role ${o.role} has no VIP`);
  // A role that exists keeps the instance count an operator may have scaled it to.
  const want = existing?.instances ?? o.instances;
  log(`role ${o.role}${existing ? " (exists)" : ""}: VIP ${vip}`);

  const timings = new Map<string, GuestTiming>();
  const serving = new Set<string>();
  const url = `http://${vip}/`;
  let routed = "";
  for (;;) {
    const { items } = await c.get<{ items: GuestView[] }>(`/v1/guests?role=${o.role}`);
    const live = items.filter((g) => g.state !== "deleting");
    for (const g of live) {
      if (g.state === "failed") throw new Error(`guest ${g.name} failed: ${g.lastError ?? "?"}`);
      if (g.state === "running" && !timings.has(g.name)) {
        timings.set(g.name, {
          name: g.name,
          host: g.host ?? "",
          dip: g.dip ?? "",
          createToRunningS: existing ? null : (Date.now() - t0) / 1000,
          controllerCreateS: null,
          controllerSteps: null,
          createToServingS: null,
        });
        log(
          `${g.name} running on ${g.host}${existing ? "" : ` (${((Date.now() - t0) / 1000).toFixed(1)} s after the request)`}`,
        );
      }
    }
    // Route the VIP to the hosts of the running guests as they come up.
    const via = hostAddresses(timings, addressOf);
    if (via.join() !== routed) {
      await routeVip(o.netns, vip, via);
      routed = via.join();
    }
    if (timings.size) {
      const a = await curl(o.netns, url, 2);
      const t = a === null ? undefined : timings.get(a);
      if (t && !serving.has(t.name)) {
        serving.add(t.name);
        t.createToServingS = existing ? null : (Date.now() - t0) / 1000;
        log(
          `${t.name} serves on the VIP${existing ? "" : ` (${t.createToServingS!.toFixed(1)} s after the request)`}`,
        );
      }
    }
    o.onPoll?.(live, serving);
    if (serving.size === want && timings.size === want) break;
    if (Date.now() > deadline) {
      throw new Error(
        `role ${o.role}: ${serving.size} of ${want} guests serving on ${url} after ${o.timeoutMs / 1000} s`,
      );
    }
    await sleep(timings.size ? 250 : 1000);
  }
  if (!existing) {
    const ev = await c.get<{ items: EventView[] }>(`/v1/events?subjectType=guest&limit=1000`);
    for (const e of ev.items) {
      const m = /^guest (\S+) running/.exec(e.message);
      const t = m ? timings.get(m[1]!) : undefined;
      const d = e.data as { createMs?: number; steps?: Record<string, number> } | null;
      if (t && d?.createMs !== undefined) {
        t.controllerCreateS = d.createMs / 1000;
        t.controllerSteps = d.steps ?? null;
      }
    }
  }
  return { vip, reused: existing !== undefined, timings, addressOf };
}

export async function checkRole(o: RoleCheckOptions): Promise<RoleReport> {
  const log = o.log ?? (() => undefined);
  const role = o.role ?? "web";
  const instances = o.instances ?? 2;
  const capMbit = o.capMbit ?? 20;
  const timeoutMs = o.timeoutMs ?? 600_000;
  const deadline = Date.now() + timeoutMs;
  const c = o.client;

  const hosts = await readyHosts(c);
  const clock = Math.min(...hosts.map((h) => h.cpuMhz));
  const cpuShare = o.cpuShare ?? 0.4;
  const cpuMhz = Math.max(100, Math.floor(clock * cpuShare));
  const hostCaps = new Map<string, boolean | null>();
  for (const h of hosts) {
    const m = await c.get<{ events: EventView[] }>(`/v1/machines/${h.name}`);
    const reg = m.events.filter((e) => e.toState === "host-ready").at(-1);
    const g = (reg?.data as { guests?: { bandwidth?: boolean } } | null)?.guests;
    hostCaps.set(h.name, g?.bandwidth ?? null);
  }
  log(`hosts: ${hosts.map((h) => `${h.name} ${h.address} ${h.cpuMhz} MHz kvm=${h.kvm}`).join("; ")}`);

  const { vip, timings, addressOf } = await deployRole({
    client: c,
    hosts,
    netns: o.netns,
    role,
    instances,
    timeoutMs,
    log,
    spec: {
      image: "guest-base",
      vcpus: 1,
      cpu: `${cpuMhz}MHz`,
      memory: `${o.memoryMiB ?? 256}MiB`,
      disk: "2GB",
      net: `${capMbit}Mbit`,
      ports: [
        { port: 80, protocol: "tcp" },
        { port: 5201, protocol: "tcp" },
      ],
    },
  });
  const used = () => hostAddresses(timings, addressOf);
  const url = `http://${vip}/`;
  const rotation: string[] = [];
  for (let i = 0; i < 3 * instances; i++) rotation.push((await curl(o.netns, url)) ?? "(no answer)");
  log(`VIP answers in turn: ${rotation.join(" ")}`);

  const meminfo = (await curl(o.netns, `${url}cgi-bin/meminfo`)) ?? "";
  const memTotalKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(meminfo)?.[1] ?? NaN);
  const first = [...timings.values()][0]!;
  const memory = { specMiB: o.memoryMiB ?? 256, memTotalMiB: memTotalKiB / 1024 };
  log(`guest MemTotal ${memory.memTotalMiB.toFixed(1)} MiB for ${memory.specMiB} MiB`);

  // CPU: every guest burns for longer than the window; each is measured on its host.
  const quota = Math.min(1, cpuMhz / clock);
  for (let i = 0; i < instances * 2; i++) await curl(o.netns, `${url}cgi-bin/burn?seconds=25`);
  await sleep(4000);
  const window = 10_000;
  const before = new Map<string, number>();
  const tb = Date.now();
  for (const t of timings.values()) before.set(t.name, await vcpuTimeNs(o, addressOf(t.host), t.name));
  await sleep(window);
  const cpu: RoleReport["cpu"] = [];
  for (const t of timings.values()) {
    const ns = (await vcpuTimeNs(o, addressOf(t.host), t.name)) - before.get(t.name)!;
    cpu.push({ guest: t.name, quota, measured: ns / 1e6 / (Date.now() - tb) });
  }
  log(
    `CPU under a burner: ${cpu.map((x) => `${x.guest} ${(x.measured * 100).toFixed(1)} %`).join(", ")} (cap ${(quota * 100).toFixed(1)} %)`,
  );
  await sleep(12_000); // let the burners end before measuring bandwidth

  // Delete one guest: the other keeps serving, and carries the bandwidth measurement alone.
  const victim = first.name;
  await c.request("DELETE", `/v1/guests/${victim}`);
  timings.delete(victim);
  await routeVip(o.netns, vip, used());
  const answers: string[] = [];
  for (let i = 0; i < 6; i++) answers.push((await curl(o.netns, url)) ?? "(no answer)");
  log(`after deleting ${victim}: ${answers.join(" ")}`);

  // Under nested emulation a guest held to its CPU share cannot send at the network cap (with
  // the network uncapped, 2.9 Mbit/s out at 40 % of a core against 38.6 at a full core), so
  // the measurement lifts the survivor's CPU quota: what is measured is the network cap alone.
  const survivor = [...timings.values()][0];
  if (survivor) {
    const uri = `qemu+tls://${addressOf(survivor.host)}/system?pkipath=${o.pkiClientDir}`;
    await inNs(o.netns, "virsh", [
      "-c",
      uri,
      "-q",
      "schedinfo",
      `weft-${survivor.name}`,
      "--live",
      "--set",
      "vcpu_quota=-1",
    ]).catch((err: Error) => log(`could not lift ${survivor.name}'s CPU quota: ${err.message}`));
  }
  // The cap is a ceiling. A single run is often held below it by the nested guest's CPU (six
  // runs out of one guest alone on its host at a 20 Mbit/s cap: 5.8 to 19.3 Mbit/s; none
  // above 20), so the best of three runs each way is what is compared with the cap.
  const runs = { in: [] as number[], out: [] as number[] };
  for (let i = 0; i < 3; i++) {
    runs.in.push(await iperf(o.netns, vip, false));
    runs.out.push(await iperf(o.netns, vip, true));
  }
  const inMbit = Math.max(...runs.in);
  const outMbit = Math.max(...runs.out);
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
  log(`iperf3 at a ${capMbit} Mbit/s cap: into the guest ${fmt(runs.in)}, out of it ${fmt(runs.out)} Mbit/s`);

  // Back to full strength: a create on a host that has the base cached.
  const t1 = Date.now();
  await c.request("POST", `/v1/roles/${role}/scale`, { instances });
  let cached: GuestTiming | null = null;
  while (!cached) {
    const { items } = await c.get<{ items: GuestView[] }>(`/v1/guests?role=${role}`);
    const g = items.find((x) => !timings.has(x.name) && x.state !== "deleting");
    if (g?.state === "failed") throw new Error(`guest ${g.name} failed: ${g.lastError ?? "?"}`);
    if (g?.state === "running") {
      cached = {
        name: g.name,
        host: g.host ?? "",
        dip: g.dip ?? "",
        createToRunningS: (Date.now() - t1) / 1000,
        controllerCreateS: null,
        controllerSteps: null,
        createToServingS: null,
      };
      break;
    }
    if (Date.now() > deadline) throw new Error("the scaled-up guest did not run");
    await sleep(100);
  }
  await routeVip(o.netns, vip, [...used(), addressOf(cached.host)]);
  for (;;) {
    if ((await curl(o.netns, url)) === cached.name) {
      cached.createToServingS = (Date.now() - t1) / 1000;
      break;
    }
    if (Date.now() > deadline) throw new Error(`${cached.name} never answered on the VIP`);
    await sleep(250);
  }
  const evs = await c.get<{ items: EventView[] }>(`/v1/events?subjectType=guest&limit=1000`);
  // The new guest may reuse the deleted one's name: its own event is the latest.
  const ran = evs.items.filter((e) => e.message.startsWith(`guest ${cached.name} running`)).at(-1);
  const rd = ran?.data as { createMs?: number; steps?: Record<string, number> } | null | undefined;
  if (rd?.createMs !== undefined) {
    cached.controllerCreateS = rd.createMs / 1000;
    cached.controllerSteps = rd.steps ?? null;
  }
  log(
    `scaled back up: ${cached.name} running ${cached.createToRunningS?.toFixed(1)} s, serving ${cached.createToServingS.toFixed(1)} s after the request (base cached)`,
  );

  let cleanedUp = false;
  try {
    await c.request("DELETE", `/v1/roles/${role}`);
    await routeVip(o.netns, vip, []);
    cleanedUp = true;
  } catch (err) {
    log(`role ${role} not deleted: ${(err as Error).message}`);
  }
  return {
    role,
    vip,
    hosts: hosts.map((h) => ({
      name: h.name,
      address: h.address ?? "",
      kvm: h.kvm,
      cpuMhz: h.cpuMhz,
      bandwidth: hostCaps.get(h.name) ?? null,
    })),
    guests: [first, ...timings.values()],
    rotation,
    memory,
    cpu,
    bandwidth: { capMbit, inMbit, outMbit, runs },
    afterDelete: { deleted: victim, answers },
    cachedCreate: cached,
    cleanedUp,
  };
}
