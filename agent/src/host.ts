// Host mode: in the installed host OS, register with the controller (capacity, libvirt,
// address) using the token install-host wrote to /etc/weft/agent.json, then heartbeat.
import { open, statfs } from "node:fs/promises";
import { join } from "node:path";
import type {
  CommandReport,
  GuestNetworkParams,
  HostGuestCapabilities,
  HostRegisterRequest,
} from "@weft/wire";
import type { Clock, Random } from "./clock.js";
import type { ControllerClient } from "./client.js";
import type { HostConfig } from "./config.js";
import { AgentError, isAgentError } from "./errors.js";
import type { Exec } from "./exec.js";
import { collectCpu, collectMemoryBytes, type AddressMap } from "./inventory.js";
import type { Logger } from "./log.js";
import { heartbeatDelayMs } from "./maintenance.js";
import { exists, readText } from "./sysfs.js";

export const LIBVIRT_URI = "qemu:///system";

/**
 * Whether /dev/kvm runs ordinary guests: the device opens read-write and a vendor KVM module
 * (kvm_intel or kvm_amd) is loaded. Other KVM flavours (e.g. kvm_pvm, which only runs
 * specially built guest kernels) do not count. A TCG-emulated first-level host with `-cpu max`
 * can load kvm_amd and then passes this check.
 */
export async function detectKvm(root: string): Promise<{ usable: boolean; reason: string }> {
  try {
    const fh = await open(join(root, "dev/kvm"), "r+");
    await fh.close();
  } catch (err) {
    return {
      usable: false,
      reason: `/dev/kvm: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    };
  }
  for (const m of ["kvm_intel", "kvm_amd"]) {
    if (await exists(root, `sys/module/${m}`)) return { usable: true, reason: m };
  }
  return { usable: false, reason: "/dev/kvm opens but neither kvm_intel nor kvm_amd is loaded" };
}

/** `Running against daemon: 9.0.0` from `virsh version --daemon`, or `libvirtd (libvirt) 9.0.0`. */
export function parseLibvirtVersion(text: string): string | null {
  return (
    /Running against daemon:\s*(\S+)/.exec(text)?.[1] ??
    /^libvirtd \(libvirt\)\s+(\S+)/m.exec(text)?.[1] ??
    null
  );
}

export async function libvirtVersion(exec: Exec, log: Logger): Promise<string | null> {
  const tries: [string, string[]][] = [
    ["virsh", ["--connect", LIBVIRT_URI, "version", "--daemon"]],
    ["libvirtd", ["--version"]],
  ];
  for (const [cmd, args] of tries) {
    try {
      const v = parseLibvirtVersion((await exec.run(cmd, args, { timeoutMs: 20_000 })).stdout);
      if (v) return v;
    } catch (err) {
      if (!isAgentError(err) || err.type !== "exec") throw err;
      log.warn("libvirt version probe failed", { cmd, error: err.message });
    }
  }
  return null;
}

/** The interface of the IPv4 default route, from /proc/net/route. */
export function defaultRouteInterface(procNetRoute: string): string | null {
  for (const line of procNetRoute.split("\n").slice(1)) {
    const [iface, dest, , , , , , mask] = line.trim().split(/\s+/);
    if (iface && dest === "00000000" && mask === "00000000") return iface;
  }
  return null;
}

/** The primary address: the first IPv4 address of the default-route interface, without prefix. */
export async function primaryAddress(root: string, addresses: AddressMap): Promise<string | null> {
  const iface = defaultRouteInterface((await readText(root, "proc/net/route")) ?? "");
  const candidates =
    iface !== null
      ? (addresses.get(iface) ?? [])
      : [...addresses.entries()].filter(([n]) => n !== "lo").flatMap(([, a]) => a);
  const v4 = candidates.find(
    (a) => /^\d+\.\d+\.\d+\.\d+\//.test(a) && !a.startsWith("127.") && !a.startsWith("169.254."),
  );
  return v4?.split("/")[0] ?? null;
}

export interface CapacityOptions {
  root: string;
  /** The file system whose size counts as the host's disk. */
  diskPath: string;
  exec: Exec;
  log: Logger;
  addresses: AddressMap;
  /** What the host can enforce for guests (guest-net.ts probes it). */
  guests?: () => Promise<HostGuestCapabilities>;
}

export async function collectHostRegistration(o: CapacityOptions): Promise<HostRegisterRequest> {
  const cpu = await collectCpu(o.root);
  const mem = await collectMemoryBytes(o.root);
  const fs = await statfs(o.diskPath);
  const kvm = await detectKvm(o.root);
  o.log.info("kvm", { usable: kvm.usable, reason: kvm.reason });
  return {
    capacity: {
      cpus: cpu.count,
      cpuMhz: Math.round(cpu.mhz ?? 0),
      memoryMiB: Math.floor(mem / 1048576),
      diskBytes: fs.blocks * fs.bsize,
      kvm: kvm.usable,
    },
    libvirt: { uri: LIBVIRT_URI, version: await libvirtVersion(o.exec, o.log) },
    address: await primaryAddress(o.root, o.addresses),
    ...(o.guests ? { guests: await o.guests() } : {}),
  };
}

export interface HostDeps {
  config: HostConfig;
  client: ControllerClient;
  log: Logger;
  clock: Clock;
  random: Random;
  registration: () => Promise<HostRegisterRequest>;
  uptimeSeconds: () => number;
  signal?: AbortSignal;
  initialIntervalSeconds?: number;
  /** Runs a guest-network command (network, forwarding, nftables); returns what it did. */
  guestNetwork?: (params: GuestNetworkParams) => Promise<string>;
  /** Prepares leaving the host OS for a wipe or reboot command; returns what it did. */
  leave?: (kind: "wipe" | "reboot") => Promise<string>;
  reboot?: () => Promise<void>;
}

/** A host command's outcome as its final report. */
function outcomeReport(stage: string, outcome: Promise<string>): Promise<CommandReport> {
  return outcome.then(
    (message): CommandReport => ({ state: "SUCCEEDED", progress: 1, stage, message }),
    (err: unknown): CommandReport => ({
      state: "FAILED",
      message: (err as Error).message.slice(0, 2000),
      error: isAgentError(err)
        ? err.toBody()
        : { type: "internal", code: "HOST_COMMAND_FAILED", message: String(err) },
    }),
  );
}

export async function runHost(deps: HostDeps): Promise<void> {
  const { client, log, clock } = deps;
  // The client already retried; a report still undelivered is said, not dropped silently.
  const report = (id: string, r: CommandReport): Promise<void> =>
    client.report(id, r).catch((err: unknown) =>
      log.warn("command report not delivered", {
        command: id,
        state: r.state,
        error: (err as Error).message,
      }),
    );
  client.setToken(deps.config.token);
  const reg = await deps.registration();
  log.info("capacity", {
    cpus: reg.capacity.cpus,
    mhz: reg.capacity.cpuMhz,
    memMiB: reg.capacity.memoryMiB,
    diskGiB: (reg.capacity.diskBytes / 2 ** 30).toFixed(1),
    kvm: reg.capacity.kvm,
    libvirt: reg.libvirt.version,
    address: reg.address,
  });
  const refused = (err: AgentError): AgentError =>
    new AgentError(
      "unauthorized",
      "TOKEN_REFUSED",
      `the controller refused the host token of ${deps.config.machineId}: ${err.message}`,
      {
        cause: err,
      },
    );
  for (let n = 0; ; n++) {
    try {
      await client.registerHost(reg);
      break;
    } catch (err) {
      if (isAgentError(err) && err.type === "unauthorized") throw refused(err);
      if (!isAgentError(err) || err.type !== "unavailable") throw err;
      const wait = Math.min(60_000, 2000 * 2 ** n) * (0.5 + deps.random() / 2);
      log.warn("controller unreachable; registering again later", {
        waitMs: Math.round(wait),
        error: err.message,
      });
      await clock.sleep(wait, deps.signal);
    }
  }
  log.info("registered", { machine: deps.config.machineId, host: deps.config.hostname });
  let interval = deps.initialIntervalSeconds ?? 30;
  while (!deps.signal?.aborted) {
    try {
      const res = await client.heartbeat({ mode: "host", uptimeSeconds: deps.uptimeSeconds(), running: [] });
      interval = res.intervalSeconds;
      for (const c of res.commands) {
        const id = c.ok ? c.command.id : c.id;
        if (id === null) continue;
        const kind = c.ok ? c.command.kind : null;
        if ((kind === "wipe" || kind === "reboot") && deps.leave) {
          // A release (wipe) cannot wipe the disk the host runs from: it makes the disk
          // unbootable so that the machine falls through to PXE, and the maintenance OS wipes it.
          const r = await outcomeReport(kind, deps.leave(kind));
          await report(id, r);
          if (r.state === "SUCCEEDED") {
            log.info("leaving the host OS", { command: id, kind });
            await deps.reboot?.();
            return;
          }
          continue;
        }
        if (c.ok && c.command.kind === "guest-network" && deps.guestNetwork) {
          const r = await outcomeReport("guest-network", deps.guestNetwork(c.command.params));
          log.info("guest-network", { command: id, state: r.state, message: r.message });
          await report(id, r);
          continue;
        }
        const err = new AgentError(
          "unsupported",
          "COMMAND_UNSUPPORTED_IN_HOST_MODE",
          `host mode does not run ${kind ?? "this command"}`,
        );
        await report(id, { state: "FAILED", message: err.message, error: err.toBody() });
      }
    } catch (err) {
      if (isAgentError(err) && err.type === "unauthorized") throw refused(err);
      log.warn("heartbeat failed", { error: (err as Error).message });
    }
    try {
      await clock.sleep(heartbeatDelayMs(interval, deps.random), deps.signal);
    } catch {
      break;
    }
  }
}
