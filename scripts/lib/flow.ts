// Shared by the nightly test and the demo: drive the lab and the controller through the same
// steps an operator would, and watch machines move through their states.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { MachineView } from "@weft/wire";
import { Client } from "../../controller/src/cli/client.js";
import { labPaths } from "../../lab/src/config.js";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export function run(cmd: string, argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: "inherit", cwd: root });
    p.on("error", reject);
    p.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${argv.join(" ")} exited with ${code}`)),
    );
  });
}

/** `weft-lab up` with these global flags: builds the lab, or repairs what is missing of it. */
export function labUp(labArgs: string[], servers: number, memoryMiB: string, cpus = "auto"): Promise<void> {
  return run(process.execPath, [
    "lab/dist/main.js",
    ...labArgs,
    "up",
    "--servers",
    String(servers),
    "--memory",
    memoryMiB,
    "--cpus",
    cpus,
  ]);
}

/** The controller of the lab in `stateDir`, through its unix socket. */
export function labClient(stateDir: string): Client {
  const p = labPaths(stateDir);
  return new Client({ socket: p.controllerSocket, token: fs.readFileSync(p.controllerToken, "utf8").trim() });
}

export interface Watch {
  /** Called with every machine each poll (for live progress). */
  onPoll?: (machines: MachineView[]) => void;
  /** Called once when a machine reaches the state. */
  onReached?: (name: string) => void;
}

/** Waits until every named machine is in `state`; a failed machine or the deadline throws. */
export async function waitForState(
  client: Client,
  names: string[],
  state: string,
  what: string,
  timeoutMs: number,
  watch: Watch = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const reached = new Set<string>();
  for (;;) {
    const { items } = await client.get<{ items: MachineView[] }>("/v1/machines");
    watch.onPoll?.(items);
    for (const n of names) {
      const m = items.find((x) => x.name === n);
      if (m?.state === "failed") throw new Error(`${n} failed while ${what}: ${m.lastError ?? "?"}`);
      if (m?.state === state && !reached.has(n)) {
        reached.add(n);
        watch.onReached?.(n);
      }
    }
    if (reached.size === names.length) return;
    if (Date.now() > deadline) {
      throw new Error(`timed out ${what}: ${names.filter((n) => !reached.has(n)).join(", ")} not ${state}`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

export const serverNames = (n: number) => Array.from({ length: n }, (_, i) => `srv${i + 1}`);
