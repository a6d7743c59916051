// Weft's main job on its embedded defaults, for `npm start`: build the images (cached), bring
// up the lab, power on its servers, let them enlist, deploy the host image, and print what an
// operator needs. A second run reuses the images and a running lab, and says so.
//
//   npm start -- [--servers N]
import fs from "node:fs";
import { parseArgs } from "node:util";
import type { MachineView } from "@weft/wire";
import { DEFAULT_STATE_DIR, labPaths } from "../lab/src/config.js";
import { labClient, run, serverNames, waitForState } from "./lib/flow.js";

const { values: args } = parseArgs({
  options: { servers: { type: "string", default: "2" }, image: { type: "string", default: "host-bookworm" } },
});
const servers = Number(args.servers);
if (!Number.isInteger(servers) || servers < 1 || servers > 6) throw new Error("--servers takes 1 to 6");
const live = process.stdout.isTTY === true && process.env["CI"] !== "true";
const t0 = Date.now();
const elapsed = (since = t0) => `${((Date.now() - since) / 1000).toFixed(0)}s`;
const say = (msg: string) => console.log(`[weft +${elapsed()}] ${msg}`);
const names = serverNames(servers);
const stateDir = DEFAULT_STATE_DIR;

const since = new Map<string, { state: string; at: number }>();
let drawn = 0;
/** One line per server: its state and how long it has been in it. Redrawn on a terminal. */
function progress(items: MachineView[]): void {
  const lines: string[] = [];
  for (const n of names) {
    const m = items.find((x) => x.name === n);
    const state = m?.state ?? "unknown";
    const prev = since.get(n);
    if (!prev || prev.state !== state) {
      since.set(n, { state, at: Date.now() });
      if (!live) say(`${n}: ${prev ? `${prev.state} -> ` : ""}${state}`);
    }
    lines.push(`  ${n.padEnd(6)} ${state.padEnd(12)} ${elapsed(since.get(n)!.at).padStart(5)}`);
  }
  if (!live) return;
  if (drawn) process.stdout.write(`\x1b[${drawn}A`);
  process.stdout.write(lines.map((l) => `\x1b[2K${l}\n`).join(""));
  drawn = lines.length;
}

const cacheBefore = fs.existsSync("/var/cache/weft/images/host-bookworm/host-bookworm.manifest.json");
say(cacheBefore ? "images: checking the cache (built before)" : "images: first build (a few minutes)");
await run(process.execPath, ["boot-images/dist/main.js", "build"]);

const labWasUp =
  fs.existsSync(labPaths(stateDir).controllerToken) && fs.existsSync(labPaths(stateDir).controllerSocket);
say(labWasUp ? "lab: already running; reusing it" : `lab: bringing up ${servers} servers`);
await run(process.execPath, ["lab/dist/main.js", "up", "--servers", String(servers)]);

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

const TIMEOUT = 40 * 60_000;
const notYet = async (state: string) =>
  (await client.get<{ items: MachineView[] }>("/v1/machines")).items.filter(
    (m) => names.includes(m.name ?? "") && m.state !== state,
  );

if ((await notYet("host-ready")).length) {
  const toEnlist = (await notYet("host-ready")).filter(
    (m) => m.state !== "deploying" && m.state !== "rebooting",
  );
  if (toEnlist.length) {
    say(`waiting for ${toEnlist.map((m) => m.name).join(", ")} to PXE-boot and enlist`);
    await waitForState(
      client,
      toEnlist.map((m) => m.name!),
      "ready",
      "enlisting",
      TIMEOUT,
      { onPoll: progress },
    );
    for (const m of toEnlist) {
      say(`${m.name}: deploy ${args.image}`);
      await client.request("POST", `/v1/machines/${m.name}/deploy`, { image: args.image });
    }
  }
  say("waiting for the hosts to install, reboot from disk and register");
  await waitForState(client, names, "host-ready", "deploying", TIMEOUT, { onPoll: progress });
} else {
  say("all servers are host-ready already");
}

const show = (argv: string[]) => run(process.execPath, ["controller/dist/cli/main.js", ...argv]);
const p = labPaths(stateDir);
const cliEnv = p.controllerSocket === "/run/weft/weft.sock" ? "" : `WEFT_SOCKET=${p.controllerSocket} `;
console.log("\nMachines:");
await show([
  "--socket",
  p.controllerSocket,
  "--token-file",
  p.controllerToken,
  "machines",
  "list",
  "-o",
  "wide",
]);
console.log(`
Weft's main job ran in ${elapsed()} (${cacheBefore ? "images cached" : "cold: images built"}${labWasUp ? ", lab reused" : ""}).

Look around:
  ${cliEnv}npx weft machines list
  ${cliEnv}npx weft machines show srv1        # a machine and its history of events
  ${cliEnv}npx weft events --follow
  npx weft-lab status                  # power, MAC and console tail of each server
  npx weft-lab console srv1 --follow   # a server's serial console
Release a host (wipe, back to ready):   npx weft machines release srv1 --wait
Tear it all down:                       npx weft-lab down
`);
