// Weft's main job on its embedded defaults, for `npm start`: build the images (cached), bring
// up the lab, power on its servers, let them enlist, deploy the host image, create a demo role
// of two guests behind a VIP, and print what an operator needs. A second run reuses the
// images, a running lab, installed hosts and the role, and says so.
//
//   npm start -- [--servers N] [--role NAME] [--instances N]
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { MachineView } from "@weft/wire";
import type { GuestView } from "../controller/src/guests/service.js";
import { DEFAULT_CONFIG, DEFAULT_STATE_DIR, labPaths } from "../lab/src/config.js";
import { labClient, labUp, root, run, serverNames, waitForState } from "./lib/flow.js";
import { curl, deployRole, readyHosts } from "./lib/guests.js";

const { values: args } = parseArgs({
  options: {
    servers: { type: "string", default: "2" },
    image: { type: "string", default: "host-bookworm" },
    role: { type: "string", default: "web" },
    instances: { type: "string", default: "2" },
    // Room for the demo's guests beside the host's own reserve (1 GiB in placement).
    memory: { type: "string", default: "2560" },
  },
});
const servers = Number(args.servers);
if (!Number.isInteger(servers) || servers < 1 || servers > 6) throw new Error("--servers takes 1 to 6");
const instances = Number(args.instances);
if (!Number.isInteger(instances) || instances < 1 || instances > 8)
  throw new Error("--instances takes 1 to 8");
const live = process.stdout.isTTY === true && process.env["CI"] !== "true";
// From `npm start` itself when it passes its start time (setup included).
const startMs = Number(process.env["WEFT_START_MS"]);
const t0 = Number.isFinite(startMs) && startMs > 0 && startMs <= Date.now() ? startMs : Date.now();
const elapsed = (since = t0) => `${((Date.now() - since) / 1000).toFixed(0)}s`;
const say = (msg: string) => {
  clearBoard();
  console.log(`[weft +${elapsed()}] ${msg}`);
};
const names = serverNames(servers);
const stateDir = DEFAULT_STATE_DIR;
const netns = DEFAULT_CONFIG.netns;
const TIMEOUT = 40 * 60_000;

// Live progress: one line per server or guest with its stage and the time spent in it, redrawn
// in place on a terminal; with CI=true or no terminal, one plain line per stage change.
const since = new Map<string, { stage: string; at: number }>();
let drawn = 0;
function clearBoard(): void {
  if (live && drawn) process.stdout.write(`\x1b[${drawn}A\x1b[0J`);
  drawn = 0;
}
function board(rows: { name: string; stage: string; detail?: string }[]): void {
  const lines: string[] = [];
  for (const r of rows) {
    const prev = since.get(r.name);
    if (!prev || prev.stage !== r.stage) {
      since.set(r.name, { stage: r.stage, at: Date.now() });
      if (!live)
        say(`${r.name}: ${prev ? `${prev.stage} -> ` : ""}${r.stage}${r.detail ? ` (${r.detail})` : ""}`);
    }
    const at = since.get(r.name)!.at;
    lines.push(`  ${r.name.padEnd(12)} ${r.stage.padEnd(12)} ${elapsed(at).padStart(5)}  ${r.detail ?? ""}`);
  }
  if (!live) return;
  clearBoard();
  process.stdout.write(lines.map((l) => `${l}\n`).join(""));
  drawn = lines.length;
}
const machineBoard = (items: MachineView[]) =>
  board(names.map((n) => ({ name: n, stage: items.find((x) => x.name === n)?.state ?? "unknown" })));

// The first (cold) run's time is kept so that later runs can print both.
const runsFile = path.join(root, ".weft", "demo-runs.json");
interface RunRecord {
  at: string;
  seconds: number;
  imagesCached: boolean;
  labReused: boolean;
}
const runs: RunRecord[] = fs.existsSync(runsFile)
  ? (JSON.parse(fs.readFileSync(runsFile, "utf8")) as RunRecord[])
  : [];

const cacheBefore = fs.existsSync("/var/cache/weft/images/host-bookworm/host-bookworm.manifest.json");
say(cacheBefore ? "images: checking the cache (built before)" : "images: first build (a few minutes)");
await run(process.execPath, ["boot-images/dist/main.js", "build"]);

// A lab whose namespace exists is reused; `weft-lab up` repairs whatever of it is missing.
const labWasUp = fs.existsSync(`/run/netns/${netns}`) && fs.existsSync(labPaths(stateDir).state);
say(labWasUp ? "lab: already running; reusing it" : `lab: bringing up ${servers} servers`);
await labUp([], servers, args.memory);

const client = labClient(stateDir);
const { items } = await client.get<{ items: MachineView[] }>("/v1/machines");
for (const n of names) {
  const m = items.find((x) => x.name === n);
  const power = await client.request<{ state: string }>("POST", `/v1/machines/${n}/power`, {
    action: "status",
  });
  if (power.state !== "on") {
    say(`${n}: power on (${m?.state ?? "new"})`);
    await client.request("POST", `/v1/machines/${n}/power`, { action: "on" });
  }
}

const notReady = (await client.get<{ items: MachineView[] }>("/v1/machines")).items.filter(
  (m) => names.includes(m.name ?? "") && m.state !== "host-ready",
);

if (notReady.length) {
  const toEnlist = notReady.filter((m) => m.state !== "deploying" && m.state !== "rebooting");
  if (toEnlist.length) {
    say(`waiting for ${toEnlist.map((m) => m.name).join(", ")} to PXE-boot and enlist`);
    await waitForState(
      client,
      toEnlist.map((m) => m.name!),
      "ready",
      "enlisting",
      TIMEOUT,
      { onPoll: machineBoard },
    );
    for (const m of toEnlist) {
      say(`${m.name}: deploy ${args.image}`);
      await client.request("POST", `/v1/machines/${m.name}/deploy`, { image: args.image });
    }
  }
  say("waiting for the hosts to install, reboot from disk and register");
  await waitForState(client, names, "host-ready", "deploying", TIMEOUT, { onPoll: machineBoard });
} else {
  say("all servers are host-ready already");
}

// The demo role: the guest base image's HTTP service, one guest per instance, spread across
// the hosts, behind one VIP. A small instance: the classic 1.6 GHz of a core (less when the
// host's clock is lower), 256 MiB, 2 GB of sparse disk, 100 Mbit/s.
const hosts = await readyHosts(client);
const clock = Math.min(...hosts.map((h) => h.cpuMhz));
say(`role ${args.role}: ${instances} guests of guest-base behind a VIP`);
const role = await deployRole({
  client,
  hosts,
  netns,
  role: args.role,
  instances,
  timeoutMs: TIMEOUT,
  spec: {
    image: "guest-base",
    vcpus: 1,
    cpu: `${Math.min(1600, clock)}MHz`,
    memory: "256MiB",
    disk: "2GB",
    net: "100Mbit",
    ports: [{ port: 80, protocol: "tcp" }],
  },
  log: (msg) => {
    if (!live) say(msg);
  },
  onPoll: (guests: GuestView[], serving) =>
    board(
      guests.map((g) => ({
        name: g.name,
        stage: serving.has(g.name) ? "serving" : g.state,
        detail: `${g.host ?? "-"} ${g.dip ?? ""}`,
      })),
    ),
});
clearBoard();
if (role.reused) say(`role ${args.role} was there already; its guests answer on ${role.vip}`);
// Ask until every guest has answered (the lab spreads connections over the hosts by port).
const answers: string[] = [];
while (answers.length < 2 * instances || (role.timings.size > new Set(answers).size && answers.length < 24)) {
  answers.push((await curl(netns, `http://${role.vip}/`)) ?? "(no answer)");
}

const seconds = Math.round((Date.now() - t0) / 1000);
runs.push({ at: new Date(t0).toISOString(), seconds, imagesCached: cacheBefore, labReused: labWasUp });
fs.mkdirSync(path.dirname(runsFile), { recursive: true });
fs.writeFileSync(runsFile, JSON.stringify(runs, null, 2));

const p = labPaths(stateDir);
const weft = (argv: string[]) =>
  run(process.execPath, [
    "controller/dist/cli/main.js",
    "--socket",
    p.controllerSocket,
    "--token-file",
    p.controllerToken,
    ...argv,
  ]);
const cliEnv = p.controllerSocket === "/run/weft/weft.sock" ? "" : `WEFT_SOCKET=${p.controllerSocket} `;
console.log("\nMachines:");
await weft(["machines", "list", "-o", "wide"]);
console.log("\nHosts (guest capacity):");
await weft(["hosts", "list", "-o", "wide"]);
console.log("\nGuests:");
await weft(["guests", "list", "-o", "wide"]);

const kind = (r: RunRecord) =>
  `${r.imagesCached ? "images cached" : "cold: images built"}${r.labReused ? ", lab reused" : ""}`;
const first = runs[0]!;
console.log(`
Role ${args.role}: VIP ${role.vip}, port 80, balanced across ${[...role.timings.values()]
  .map((t) => `${t.name} (${t.dip} on ${t.host})`)
  .join(", ")}.
Asked ${answers.length} times from the provisioning network: ${answers.join(" ")}
Reach it from inside the lab:
  ip netns exec ${netns} curl http://${role.vip}/

Weft's main job ran in ${seconds}s (${kind(runs.at(-1)!)}).${
  runs.length > 1 ? `\nFirst run on this machine: ${first.seconds}s (${kind(first)}), ${first.at}.` : ""
}

Look around:
  ${cliEnv}npx weft machines list
  ${cliEnv}npx weft machines show srv1      # a machine and its history of events
  ${cliEnv}npx weft hosts list              # guest capacity: used and free
  ${cliEnv}npx weft guests list
  ${cliEnv}npx weft events --follow
  npx weft-lab status                 # power, MAC and console tail of each server
  npx weft-lab console srv1 --follow  # a server's serial console
Scale the role:                        npx weft roles scale ${args.role} 3
Release a host (its guests go first):  npx weft roles delete ${args.role} && npx weft machines release srv1 --wait
Tear it all down:                      npx weft-lab down
`);
