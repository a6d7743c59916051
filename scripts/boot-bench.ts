// Boot benchmark: power-on to the maintenance OS's agent up, for one server alone and then for
// N at once (default 4), in a lab of its own. Prints each server's timeline (DHCP, boot script,
// kernel, initrd, the OS's own DHCP, agent up) and the figures against the targets (one server
// under 15 s, each of four under 25 s), and writes them as JSON.
//
//   npm run bench:boot -- [--servers 4] [--report FILE] [--keep]
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { labClient, labUp, root, run, serverNames, waitForState } from "./lib/flow.js";
import { labPaths } from "../lab/src/config.js";
import { bootTimelines, formatTimelines, type BootTimeline } from "../lab/src/timeline.js";

const { values: args } = parseArgs({
  options: {
    servers: { type: "string", default: "4" },
    "state-dir": { type: "string", default: "/var/lib/weft-bootbench" },
    netns: { type: "string", default: "weft-bootbench" },
    bridge: { type: "string", default: "weftbrb0" },
    memory: { type: "string", default: "1024" },
    report: { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const servers = Number(args.servers);
if (!Number.isInteger(servers) || servers < 1 || servers > 9) throw new Error("--servers: 1 to 9");
const stateDir = path.resolve(args["state-dir"]);
const labArgs = ["--state-dir", stateDir, "--netns", args.netns, "--bridge", args.bridge];
const log = (msg: string) => console.log(`[boot-bench] ${msg}`);
const client = () => labClient(stateDir);

/** Powers the named servers on together and waits for their agents; their timelines. */
async function boot(names: string[]): Promise<BootTimeline[]> {
  const since = Date.now();
  await Promise.all(names.map((n) => client().request("POST", `/v1/machines/${n}/power`, { action: "on" })));
  // A server that enlisted before is ready already: its agent up is the next enlist request.
  const until = Date.now() + 10 * 60_000;
  for (;;) {
    const t = bootTimelines(fs.readFileSync(labPaths(stateDir).controllerLog, "utf8"), since);
    const up = t.filter((x) => names.includes(x.machine) && x.stages["agent-up"] !== undefined);
    if (up.length === names.length) return t.filter((x) => names.includes(x.machine));
    if (Date.now() > until) throw new Error(`agents not up after 10 min: ${formatTimelines(t)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function powerOff(names: string[]): Promise<void> {
  for (const n of names) await client().request("POST", `/v1/machines/${n}/power`, { action: "off" });
}

const result: Record<string, { timelines: BootTimeline[]; worstAgentUp: number; target: number }> = {};
let failed: Error | null = null;
try {
  await run(process.execPath, ["boot-images/dist/main.js", "build", "--only", "maintenance"]);
  await labUp(labArgs, servers, args.memory);
  const names = serverNames(servers);
  for (const [label, group, target] of [
    ["1 server", names.slice(0, 1), 15],
    [`${servers} servers at once`, names, 25],
  ] as const) {
    if (label !== "1 server" && servers === 1) break;
    log(`${label}: power on`);
    const timelines = await boot([...group]);
    const worst = Math.max(...timelines.map((t) => t.stages["agent-up"] ?? Number.NaN));
    result[label] = { timelines, worstAgentUp: worst, target };
    console.log(`\n${label}, seconds after power-on:\n${formatTimelines(timelines)}\n`);
    await waitForState(client(), [...group], "ready", "enlisting", 120_000);
    await powerOff([...group]);
  }
} catch (err) {
  failed = err as Error;
  log(`FAILED: ${failed.message}`);
} finally {
  if (!args.keep)
    await run(process.execPath, ["lab/dist/main.js", ...labArgs, "down"]).catch(() => undefined);
}

for (const [label, r] of Object.entries(result)) {
  const met = r.worstAgentUp <= r.target;
  log(
    `${label}: power-on → agent up ${r.worstAgentUp.toFixed(1)} s (slowest), target < ${r.target} s: ${met ? "met" : "not met"}`,
  );
}
const file = path.resolve(
  args.report ??
    path.join(root, ".weft", `boot-bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
);
fs.mkdirSync(path.dirname(file), { recursive: true });
fs.writeFileSync(file, JSON.stringify({ servers, result, error: failed?.message ?? null }, null, 2));
log(`report: ${file}`);
process.exit(failed ? 1 : 0);
