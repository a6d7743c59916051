// The nightly provisioning test: build the images (cached), bring the lab up, power on N
// servers, let them enlist, deploy the host image to all, wait for host-ready, check each
// host's libvirt answered, release one and see it re-enlist, tear down; write a JSON report
// with every stage's time per server. Exits non-zero on any failure and keeps the consoles and
// the controller log of a failed run.
//
// With hosts ready it deploys a role of two guests across them (guests.ts): the VIP, the caps,
// a deletion and the create-to-running/serving times go into the report.
//
//   npm run nightly -- --servers 2 [--cpus N|auto] [--report FILE] [--keep] [--skip-role] [--skip-release]
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { EventView, MachineView } from "@weft/wire";
import { labClient, labUp, root, run, serverNames, waitForState } from "./lib/flow.js";
import { checkRole, type RoleReport } from "./lib/guests.js";
import { labPaths } from "../lab/src/config.js";
import { consoleTail } from "../lab/src/lab.js";
import { isRunning } from "../lab/src/procs.js";
import { readState } from "../lab/src/state.js";
import { bootTimelines, formatTimelines, type BootTimeline } from "../lab/src/timeline.js";
const { values: args } = parseArgs({
  options: {
    servers: { type: "string", default: "1" },
    // Its own lab, so that it never touches a developer's.
    "state-dir": { type: "string", default: "/var/lib/weft-nightly" },
    netns: { type: "string", default: "weft-nightly" },
    bridge: { type: "string", default: "weftbrn0" },
    report: { type: "string" },
    keep: { type: "boolean", default: false },
    timeout: { type: "string", default: "900" },
    // Guests need memory beyond the host's own reserve (1 GiB in placement).
    memory: { type: "string", default: "2560" },
    // Per server; auto shares the machine's cores among the servers (weft-lab up --cpus).
    cpus: { type: "string", default: "auto" },
    "skip-role": { type: "boolean", default: false },
    "skip-release": { type: "boolean", default: false },
    /** Leave the controller alone during the install (by default it is killed and restarted). */
    "skip-controller-kill": { type: "boolean", default: false },
  },
});
const servers = Number(args.servers);
if (!Number.isInteger(servers) || servers < 1 || servers > 8) throw new Error("--servers takes 1 to 8");
const stateDir = path.resolve(args["state-dir"]);
const reportFile = path.resolve(
  args.report ?? path.join(root, ".weft", `nightly-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
);
const labArgs = ["--state-dir", stateDir, "--netns", args.netns, "--bridge", args.bridge];
const stageTimeoutMs = Number(args.timeout) * 1000;
const t0 = Date.now();
const since = () => ((Date.now() - t0) / 1000).toFixed(1);
const log = (msg: string) => console.log(`[nightly +${since()}s] ${msg}`);

interface StageTimes {
  [stage: string]: number;
}
const report = {
  startedAt: new Date(t0).toISOString(),
  servers,
  ok: false,
  error: null as string | null,
  steps: {} as Record<string, number>,
  machines: {} as Record<
    string,
    { stages: StageTimes; poweredOnAt: number | null; totals: Record<string, number> }
  >,
  targets: {} as Record<string, { target: number; measured: number | null; met: boolean | null }>,
  keptLogs: null as string | null,
  faults: {} as { controllerKilled?: { machine: string; atProgress: number; downSeconds: number } },
  /** Each server's first boot into the maintenance OS, from the controller's log. */
  boot: [] as BootTimeline[],
  guests: null as RoleReport | null,
};

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const s = Date.now();
  log(`${name} …`);
  const r = await fn();
  report.steps[name] = (Date.now() - s) / 1000;
  log(`${name} done in ${report.steps[name]!.toFixed(1)} s`);
  return r;
}

const names = serverNames(servers);
const client = () => labClient(stateDir);
const waitFor = (wanted: string[], state: string, what: string) =>
  waitForState(client(), wanted, state, what, stageTimeoutMs, { onReached: (n) => log(`${n} is ${state}`) });

/**
 * The fault a durable job must survive: once `name` is writing its image, the controller is
 * killed outright (SIGKILL, no shutdown) and started again by `weft-lab up`, which repairs the
 * lab. The agent's image download, progress reports and final report meet a dead controller
 * for a while; the install must still complete.
 */
async function killControllerMidInstall(name: string, job: string): Promise<void> {
  let progress = 0;
  for (;;) {
    const j = await client().get<{ progress: number; state: string }>(`/v1/jobs/${job}`);
    progress = j.progress;
    if (progress >= 0.3) break;
    if (j.state !== "running" && j.state !== "pending") throw new Error(`${name}: job ${job} is ${j.state}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const rec = readState(labPaths(stateDir).state)?.processes["controller"];
  if (!rec) throw new Error("the lab has no controller process on record");
  process.kill(rec.pid, "SIGKILL");
  const killedAt = Date.now();
  while (isRunning(rec)) await new Promise((r) => setTimeout(r, 200));
  log(
    `killed the controller (pid ${rec.pid}) while ${name} was writing its image (${Math.round(progress * 100)} %)`,
  );
  await new Promise((r) => setTimeout(r, 5000));
  await labUp(labArgs, servers, args.memory, args.cpus);
  const down = (Date.now() - killedAt) / 1000;
  log(`controller restarted after ${down.toFixed(1)} s down`);
  report.faults.controllerKilled = { machine: name, atProgress: progress, downSeconds: down };
}

/** Per machine: seconds from its power-on to each state it reached (from the events). */
async function collectTimings(): Promise<void> {
  for (const n of names) {
    const m = await client().get<MachineView & { events: EventView[] }>(`/v1/machines/${n}`);
    const all = await client().get<{ items: EventView[] }>(
      `/v1/events?subjectType=machine&subjectId=${m.id}&limit=1000`,
    );
    const on = all.items.find((e) => e.message === "power on");
    const base = on ? Date.parse(on.at) : null;
    const stages: StageTimes = {};
    for (const e of all.items) {
      const key = e.toState
        ? `${e.toState}`
        : e.message.startsWith("install-host: ")
          ? e.message.slice(14).split(" ")[0]!
          : null;
      if (key && base !== null && stages[key] === undefined) stages[key] = (Date.parse(e.at) - base) / 1000;
    }
    report.machines[n] = {
      stages,
      poweredOnAt: base === null ? null : (base - t0) / 1000,
      totals: { "power-on→host-ready": stages["host-ready"] ?? NaN },
    };
  }
}

async function main(): Promise<void> {
  await step("build images", () => run(process.execPath, ["boot-images/dist/main.js", "build"]));
  await step("lab up", () => labUp(labArgs, servers, args.memory, args.cpus));
  await step("import images", () =>
    run(process.execPath, [
      "controller/dist/cli/main.js",
      "--socket",
      labPaths(stateDir).controllerSocket,
      "--token-file",
      labPaths(stateDir).controllerToken,
      "images",
      "import",
    ]),
  );
  await step("power on", async () => {
    for (const n of names) await client().request("POST", `/v1/machines/${n}/power`, { action: "on" });
  });
  await step("enlist", () => waitFor(names, "ready", "enlisting"));
  report.boot = bootTimelines(fs.readFileSync(labPaths(stateDir).controllerLog, "utf8"), t0);
  log(`boot timeline (seconds after power-on):\n${formatTimelines(report.boot)}`);
  await step("deploy", async () => {
    const jobs: string[] = [];
    for (const n of names) {
      const r = await client().request<{ job: string }>("POST", `/v1/machines/${n}/deploy`, {
        image: "host-bookworm",
      });
      jobs.push(r.job);
    }
    if (!args["skip-controller-kill"]) await killControllerMidInstall(names[0]!, jobs[0]!);
    await waitFor(names, "host-ready", "deploying");
  });
  await step("check libvirt", async () => {
    for (const n of names) {
      const m = await client().get<MachineView & { events: EventView[] }>(`/v1/machines/${n}`);
      const reg = m.events.find((e) => e.toState === "host-ready");
      const lv = (reg?.data as { libvirt?: { version?: string | null } } | null)?.libvirt;
      if (!lv?.version) throw new Error(`${n}: the host did not report a libvirt daemon that answers`);
      // The controller's own check, over TLS with its client certificate, at registration.
      const tls = (
        reg?.data as {
          libvirtTls?: { ok: boolean; version: string | null; uri: string; error: string | null };
        }
      )?.libvirtTls;
      if (!tls?.ok)
        throw new Error(
          `${n}: the controller did not reach libvirt over TLS: ${tls?.error ?? "not checked"}`,
        );
      log(`${n}: libvirt ${lv.version}; answered the controller over TLS (${tls.uri.replace(/\?.*/, "")})`);
    }
  });
  if (!args["skip-role"]) {
    await step("role", async () => {
      report.guests = await checkRole({
        client: client(),
        netns: args.netns,
        pkiClientDir: path.join(labPaths(stateDir).controllerData, "pki", "client"),
        instances: 2,
        log,
      });
    });
  }
  if (!args["skip-release"]) {
    await step("release and re-enlist", async () => {
      await client().request("POST", `/v1/machines/${names[0]}/release`, {});
      await waitFor([names[0]!], "ready", "releasing");
    });
  }
  await collectTimings();
  report.ok = true;
}

/** The last lines of each kept console and the controller log, on standard output: a CI run's
 * files are gone with its machine, its output is not. */
function printTails(dir: string, lines = 40): void {
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith(".console.log") || x === "controller.log")) {
    const tail = consoleTail(path.join(dir, f), lines);
    if (tail.length === 0) continue;
    console.log(`\n--- last ${tail.length} lines of ${f} ---\n${tail.join("\n")}\n--- end of ${f} ---`);
  }
}

// The lab appends to its logs across runs: a failed run keeps only what it wrote itself.
const logStarts = new Map<string, number>(
  (fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : [])
    .filter((f) => f.endsWith(".log"))
    .map((f) => [f, fs.statSync(path.join(stateDir, f)).size]),
);

let failure: unknown;
try {
  await main();
} catch (err) {
  failure = err;
  report.error = (err as Error).message;
  log(`FAILED: ${report.error}`);
  await collectTimings().catch(() => undefined);
  // Keep what explains the failure before the teardown removes the lab.
  const keep = reportFile.replace(/\.json$/, "-logs");
  fs.mkdirSync(keep, { recursive: true });
  for (const f of fs.existsSync(stateDir) ? fs.readdirSync(stateDir) : []) {
    if (!f.endsWith(".log")) continue;
    const all = fs.readFileSync(path.join(stateDir, f));
    const start = logStarts.get(f) ?? 0;
    fs.writeFileSync(path.join(keep, f), all.length >= start ? all.subarray(start) : all);
  }
  report.keptLogs = keep;
  printTails(keep);
} finally {
  if (!args.keep) {
    await step("lab down", () => run(process.execPath, ["lab/dist/main.js", ...labArgs, "down"])).catch(
      (err: unknown) => log(`teardown failed: ${(err as Error).message}`),
    );
  }
}

const hostReady = Object.values(report.machines).map((m) => m.stages["host-ready"] ?? NaN);
const worst = hostReady.length ? Math.max(...hostReady) : NaN;
const target = servers === 1 ? 90 : servers <= 4 ? 180 : NaN;
if (!Number.isNaN(target)) {
  report.targets[`power-on→host-ready (${servers} server${servers > 1 ? "s" : ""})`] = {
    target,
    measured: Number.isNaN(worst) ? null : worst,
    met: Number.isNaN(worst) ? null : worst <= target,
  };
}
const agentUp = report.boot.map((b) => b.stages["agent-up"] ?? NaN);
const agentTarget = servers === 1 ? 15 : servers <= 4 ? 25 : NaN;
if (!Number.isNaN(agentTarget) && agentUp.length > 0) {
  const w = Math.max(...agentUp);
  report.targets[`power-on→maintenance agent up (${servers} server${servers > 1 ? "s" : ""})`] = {
    target: agentTarget,
    measured: Number.isNaN(w) ? null : w,
    met: Number.isNaN(w) ? null : w <= agentTarget,
  };
}
const g = report.guests;
if (g) {
  const cached = g.cachedCreate.createToRunningS;
  report.targets["guest create request→domain running, base cached"] = {
    target: 2,
    measured: cached,
    met: cached === null ? null : cached <= 2,
  };
}
fs.mkdirSync(path.dirname(reportFile), { recursive: true });
fs.writeFileSync(reportFile, JSON.stringify(report, null, 2));
console.log("\nstage times (seconds from power-on):");
for (const [n, m] of Object.entries(report.machines)) {
  console.log(
    `  ${n}: ${Object.entries(m.stages)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(", ")}`,
  );
}
for (const [k, v] of Object.entries(report.targets)) {
  console.log(
    `  target ${k}: ${v.measured === null ? "not reached" : `${v.measured.toFixed(1)} s`} (target < ${v.target} s)`,
  );
}
if (g) {
  console.log("guests (seconds from the create request):");
  for (const x of [...g.guests, g.cachedCreate]) {
    console.log(
      `  ${x.name} on ${x.host}: running ${x.createToRunningS?.toFixed(1) ?? "-"}, serving ${x.createToServingS?.toFixed(1) ?? "-"} (controller: domain running after ${x.controllerCreateS?.toFixed(1) ?? "-"})`,
    );
  }
  console.log(
    `  VIP ${g.vip}: ${g.rotation.join(" ")}; MemTotal ${g.memory.memTotalMiB.toFixed(0)}/${g.memory.specMiB} MiB; CPU ${g.cpu.map((c) => `${(c.measured * 100).toFixed(0)}%`).join(" ")} of ${((g.cpu[0]?.quota ?? 0) * 100).toFixed(0)}%; iperf3 in ${g.bandwidth.inMbit.toFixed(1)} out ${g.bandwidth.outMbit.toFixed(1)} Mbit/s (cap ${g.bandwidth.capMbit})`,
  );
}
console.log(`report: ${reportFile}`);
process.exit(failure ? 1 : 0);
