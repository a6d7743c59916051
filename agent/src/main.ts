#!/usr/bin/env node
// weft-agent entry point, and the only place that reads the real files, the environment and
// the flags, or exits the process.
//
// Maintenance OS: /init exports WEFT_URL/WEFT_NONCE/WEFT_MODE (taken from the kernel command
// line `weft.url= weft.nonce= weft.mode=`; /proc/cmdline is read too) and restarts the agent
// when it exits. Host OS: systemd starts it (WEFT_MODE=host, WEFT_CONFIG_DIR=/etc/weft) and
// $WEFT_CONFIG_DIR/agent.json, written by install-host, gives it its identity and token.
//
//   weft-agent [--mode=maintenance|host] [--url=URL] [--nonce=NONCE] [--config=PATH] [--state-dir=DIR]
//   weft-agent inventory      print the inventory as JSON and exit
//
// Exit codes: 0 stopped by a signal, 1 fatal error, 2 bad configuration, 3 refused by the
// controller (nonce or token).
// `inventory` prints JSON on stdout, so its diagnostics go to stderr.
const dataOnStdout = process.argv[2] === "inventory";
(dataOnStdout ? console.error : console.log)("weft-agent: starting");

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { uptime } from "node:os";
import { dirname, join } from "node:path";
import { systemClock } from "./clock.js";
import { ControllerClient } from "./client.js";
import { resolveConfig } from "./config.js";
import { DEFAULT_DISK_SETTINGS } from "./context.js";
import { errorBody, isAgentError } from "./errors.js";
import { createExec } from "./exec.js";
import { runHost, collectHostRegistration } from "./host.js";
import {
  applyGuestNetwork,
  GUEST_STATE_DIR,
  probeGuestCapabilities,
  restoreGuestNetwork,
} from "./guest-net.js";
import { listDisks, mountedDevices } from "./disks.js";
import { zeroRange } from "./partition.js";
import { collectAddresses, collectInventory, nodeAddresses } from "./inventory.js";
import { consoleLogger } from "./log.js";
import { runMaintenance, type TokenStore } from "./maintenance.js";

/** Survives an agent restart in the maintenance OS (tmpfs), not a reboot. */
const DEFAULT_STATE_DIR = "/run/weft";

const readOrNull = (path: string): Promise<string | null> => readFile(path, "utf8").catch(() => null);

function fileTokenStore(path: string): TokenStore {
  return {
    async load() {
      const t = await readOrNull(path);
      if (t === null) return null;
      try {
        const v = JSON.parse(t) as { machineId?: unknown; token?: unknown };
        return typeof v.machineId === "string" && typeof v.token === "string"
          ? { machineId: v.machineId, token: v.token }
          : null;
      } catch {
        return null;
      }
    },
    async save(v) {
      await mkdir(dirname(path), { recursive: true, mode: 0o700 });
      await writeFile(path, JSON.stringify(v), { mode: 0o600 });
    },
  };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const log = dataOnStdout ? consoleLogger((l) => process.stderr.write(`${l}\n`)) : consoleLogger();
  const exec = createExec(log);
  const root = "/";

  if (argv[0] === "inventory") {
    const inv = await collectInventory({ root, addresses: await collectAddresses(exec, log) });
    process.stdout.write(`${JSON.stringify(inv, null, 2)}\n`);
    return 0;
  }

  // The host OS unit sets WEFT_CONFIG_DIR=/etc/weft; agent.json there is what install-host wrote.
  const configPath =
    argv.find((a) => a.startsWith("--config="))?.slice(9) ??
    join(process.env.WEFT_CONFIG_DIR || "/etc/weft", "agent.json");
  const stateDir = argv.find((a) => a.startsWith("--state-dir="))?.slice(12) ?? DEFAULT_STATE_DIR;
  const config = resolveConfig({
    cmdline: await readOrNull("/proc/cmdline"),
    env: process.env,
    argv,
    hostConfig: await readOrNull(configPath),
  });
  log.info(`mode=${config.mode} controller=${config.controllerUrl}`);

  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.once(sig, () => {
      log.info(`${sig}: stopping`);
      stop.abort();
    });
  }
  const client = new ControllerClient({ baseUrl: config.controllerUrl, log, clock: systemClock });
  const uptimeSeconds = (): number => Math.round(uptime());
  // What both modes' loops are given.
  const common = { client, log, clock: systemClock, random: Math.random, uptimeSeconds, signal: stop.signal };

  const reboot = async (): Promise<void> => {
    await exec.run("sync", []);
    try {
      await exec.run("reboot", ["-f"]);
    } catch (err) {
      log.warn("reboot -f failed; using sysrq", { error: (err as Error).message });
      await writeFile("/proc/sysrq-trigger", "b");
    }
  };

  if (config.mode === "host") {
    const guestNet = { exec, log, root, stateDir: GUEST_STATE_DIR };
    await restoreGuestNetwork(guestNet);
    await runHost({
      guestNetwork: (params) => applyGuestNetwork(params, guestNet),
      reboot,
      leave: async (kind) => {
        if (kind === "reboot") return "rebooting";
        // The disk the host runs from: clear its partition tables and boot code so the
        // firmware falls through to PXE; the maintenance OS then wipes it for good.
        const mounted = await mountedDevices(root);
        const disks = (await listDisks(root)).filter((d) => d.partitions.some((p) => mounted.has(p.name)));
        // Zeroing the first MiB (boot code, protective MBR, primary GPT; the root partition
        // starts after it) and the last 34 sectors (backup GPT; UEFI spec 5.3.2) clears both
        // tables without touching the running file system. The host OS has no sgdisk.
        const GPT_BACKUP = 34 * 512;
        for (const d of disks) {
          await zeroRange(`/dev/${d.name}`, 0, 1 << 20);
          if (d.sizeBytes > 2 << 20) await zeroRange(`/dev/${d.name}`, d.sizeBytes - GPT_BACKUP, GPT_BACKUP);
        }
        await exec.run("sync", []);
        return `made ${disks.map((d) => d.name).join(", ") || "no disk"} unbootable; rebooting into the maintenance OS`;
      },
      ...common,
      config,
      registration: async () =>
        collectHostRegistration({
          root,
          diskPath: "/",
          exec,
          log,
          addresses: await collectAddresses(exec, log),
          guests: () => probeGuestCapabilities(guestNet),
        }),
    });
    return 0;
  }

  await runMaintenance({
    ...common,
    config,
    tokens: fileTokenStore(join(stateDir, "agent-token.json")),
    reboot,
    // The maintenance OS's `ip` is busybox's (no JSON output): take Node's view at once rather
    // than paying for a failing process start under emulation.
    inventory: () => collectInventory({ root, addresses: nodeAddresses() }),
    context: {
      exec,
      log,
      clock: systemClock,
      fetch: globalThis.fetch,
      disks: {
        ...DEFAULT_DISK_SETTINGS,
        gptmbrPath: process.env.WEFT_GPTMBR ?? DEFAULT_DISK_SETTINGS.gptmbrPath,
      },
    },
  });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const body = errorBody(err);
    console.log(`weft-agent: FATAL ${body.code}: ${body.message}`);
    if (!isAgentError(err)) console.error(err);
    const code = isAgentError(err)
      ? err.type === "invalid_request"
        ? 2
        : err.type === "unauthorized"
          ? 3
          : 1
      : 1;
    process.exit(code);
  },
);
