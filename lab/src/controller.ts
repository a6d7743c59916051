// Starting the Weft controller inside the lab.
//
// The controller runs in the lab's network namespace (its DHCP, TFTP and HTTP services
// listen on the bridge) with its data in the lab state directory and its API socket at
// <state dir>/controller.sock - a path outside anything `ip netns exec` remounts, so the
// `weft` CLI works from the host. Output goes to <state dir>/controller.log.
//
import { existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { NETWORK, labPaths, type LabConfig } from "./config.js";
import type { Accel } from "./accel.js";
import type { LabSystem } from "./exec.js";
import { recordProcess, type ProcessRecord } from "./procs.js";

export type ControllerStart =
  { started: true; process: ProcessRecord; args: string[] } | { started: false; reason: string };

/**
 * Kernel arguments the lab's servers need, in the maintenance OS and once installed. With more
 * than one vCPU under TCG the kernel finds the vCPUs' TSCs out of step and falls back to the
 * HPET, each read of which is an emulated device access: the host OS with two vCPUs, booted
 * straight from its kernel, started its agent after 60 s that way and 47 s with the TSC. TCG
 * derives every vCPU's TSC from one host counter, so trusting it is safe here.
 */
export function serverKernelArgs(accel: Accel, vcpus: number): string[] {
  return accel === "tcg" && vcpus > 1 ? ["tsc=reliable"] : [];
}

/** The controller's flags: its state in the lab, netboot on the provisioning bridge. */
export function controllerArgs(config: LabConfig, kernelArgs: readonly string[] = []): string[] {
  const paths = labPaths(config.stateDir);
  const net = NETWORK.ipv4.split(".").slice(0, 3).join(".");
  return [
    "--data-dir",
    paths.controllerData,
    "--socket",
    paths.controllerSocket,
    "--token-file",
    paths.controllerToken,
    "--listen",
    `${NETWORK.ipv4}:${CONTROLLER_PORT}`,
    "--netboot-address",
    NETWORK.ipv4,
    "--dhcp-subnet",
    `${net}.0/${NETWORK.ipv4Prefix}`,
    "--dhcp-range",
    `${net}.100-${net}.199`,
    ...(kernelArgs.length === 0
      ? []
      : [
          "--maintenance-cmdline",
          ["console=ttyS0,115200", "quiet", ...kernelArgs].join(" "),
          "--host-kernel-args",
          kernelArgs.join(" "),
        ]),
  ];
}

/** The API's TCP port on the provisioning network (agents and boot scripts use it). */
export const CONTROLLER_PORT = 7480;

export async function startController(
  sys: LabSystem,
  config: LabConfig,
  entry: string,
  kernelArgs: readonly string[] = [],
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
  const args = controllerArgs(config, kernelArgs);
  // `ip netns exec` replaces itself with the command, so the PID is the controller's.
  const pid = await sys.spawnDetached(
    "ip",
    ["netns", "exec", config.netns, process.execPath, entry, ...args],
    paths.controllerLog,
  );
  // Ready when its API socket answers; migrations on a fresh database take a moment.
  for (let waited = 0; waited < 60_000; waited += 250) {
    if (recordProcess(pid, "weft-controller") === undefined) break;
    if (await answers(paths.controllerSocket)) {
      return { started: true, process: recordProcess(pid, "weft-controller")!, args };
    }
    await sleep(250);
  }
  return { started: false, reason: `the controller did not come up: see ${paths.controllerLog}` };
}

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket, () => {
      c.destroy();
      resolve(true);
    });
    c.on("error", () => resolve(false));
  });
}
