// HOOK: starting the Weft controller inside the lab.
//
// The controller runs in the lab's network namespace (its DHCP, TFTP and HTTP services
// listen on the bridge) with its data in the lab state directory and its API socket at
// <state dir>/controller.sock - a path outside anything `ip netns exec` remounts, so the
// `weft` CLI works from the host. Output goes to <state dir>/controller.log.
//
// To finish: adjust controllerArgs() to the daemon's final flags (they are only passed
// when its --help lists them, so this works while the daemon is being written).
import { existsSync, mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { labPaths, type LabConfig } from "./config.js";
import type { LabSystem } from "./exec.js";
import { recordProcess, type ProcessRecord } from "./procs.js";

export type ControllerStart =
  { started: true; process: ProcessRecord; args: string[] } | { started: false; reason: string };

/** Flags for the controller, keeping only those its --help mentions. */
export function controllerArgs(config: LabConfig, help: string): string[] {
  const paths = labPaths(config.stateDir);
  const wanted: Array<[string, string]> = [
    ["--data-dir", paths.controllerData],
    ["--socket", paths.controllerSocket],
    ["--dhcp-interface", config.bridge],
  ];
  return wanted.filter(([flag]) => help.includes(flag)).flat();
}

export async function startController(
  sys: LabSystem,
  config: LabConfig,
  entry: string,
): Promise<ControllerStart> {
  if (!existsSync(entry)) {
    return {
      started: false,
      reason: `the controller is not built (${entry} does not exist): skipped; run \`npm run build\` and \`weft-lab up\` again`,
    };
  }
  const help = await sys.run(process.execPath, [entry, "--help"], { timeoutMs: 15_000, allowFailure: true });
  if (help.failed) {
    return {
      started: false,
      reason: `\`node ${entry} --help\` failed (${help.timedOut ? "timed out" : `exit ${String(help.exitCode)}`}): controller skipped`,
    };
  }
  const paths = labPaths(config.stateDir);
  mkdirSync(paths.controllerData, { recursive: true });
  const args = controllerArgs(config, `${help.stdout}\n${help.stderr}`);
  // `ip netns exec` replaces itself with the command, so the PID is the controller's.
  const pid = await sys.spawnDetached(
    "ip",
    ["netns", "exec", config.netns, process.execPath, entry, ...args],
    paths.controllerLog,
  );
  await sleep(1_000);
  const rec = recordProcess(pid, "weft-controller");
  if (rec === undefined) {
    return { started: false, reason: `the controller exited at once: see ${paths.controllerLog}` };
  }
  return { started: true, process: rec, args };
}
