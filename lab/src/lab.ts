// up, down and status of one lab. Every step of `up` looks at what exists before acting, so
// running it again on a lab that is up changes nothing, and on a half-built lab (a crash, a
// killed daemon, a deleted namespace) it builds only what is missing. `down` removes what
// the state file records and, for a lab whose state file was lost or never written, what
// its names and paths identify.
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import {
  chooseAccel,
  kvmDeviceUsable,
  qemuKvmProbe,
  type AccelDecision,
  type AccelProbe,
  type AccelRequest,
} from "./accel.js";
import {
  checkConfig,
  labPaths,
  serverIndex,
  serverMac,
  serverName,
  MAX_SERVERS,
  type LabConfig,
} from "./config.js";
import { serverKernelArgs, startController, type ControllerStart } from "./controller.js";
import { libvirtResponds, startLibvirt, startRouterAdvertiser } from "./daemons.js";
import { LabError } from "./errors.js";
import type { LabSystem } from "./exec.js";
import { ensureNetwork, netnsExists, removeNetwork } from "./network.js";
import { checkRoot, checkTools } from "./preflight.js";
import { findProcesses, isRunning, stopProcess, type ProcessRecord } from "./procs.js";
import { registerServers } from "./register.js";
import {
  destroyServer,
  ensureServer,
  listDomains,
  removeServer,
  serverPower,
  type ServerPower,
} from "./servers.js";
import { acquireLock, readState, writeState, type LabState } from "./state.js";

export type UpStep = "network" | "ra" | "libvirt" | "accel" | "servers" | "controller" | "register";

export interface UpOptions {
  servers: number;
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
  accel: AccelRequest;
  firmware: "bios" | "uefi";
  /** Path of the controller's entry (controller/dist/main.js). */
  controllerEntry: string;
  /** Where boot-images keeps built images; they are imported into the controller. */
  imageCache: string;
  /** Progress: called after each step. Throwing here stops `up` where it is, as a crash would. */
  onStep?: (step: UpStep, message: string) => void | Promise<void>;
  /** Replaces the KVM probe (tests). */
  probe?: AccelProbe;
}

export interface UpReport {
  alreadyUp: boolean;
  changed: string[];
  accel: AccelDecision;
  servers: Array<{ name: string; mac: string }>;
  extraServers: string[];
  controller: ControllerStart | { started: true; process: ProcessRecord; already: true };
}

function nowIso(): string {
  return new Date().toISOString();
}

function running(state: LabState, role: string): ProcessRecord | undefined {
  const rec = state.processes[role];
  return rec !== undefined && isRunning(rec) ? rec : undefined;
}

function checkUpOptions(o: UpOptions): void {
  const int = (v: number, lo: number, hi: number, what: string) => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new LabError("LAB_BAD_INPUT", `${what} must be a whole number from ${lo} to ${hi} (got ${v})`);
  };
  int(o.servers, 1, MAX_SERVERS, "--servers");
  int(o.memoryMiB, 128, 65536, "--memory (MiB)");
  int(o.vcpus, 1, 16, "--cpus");
  int(o.diskGiB, 1, 1024, "--disk-size (GiB)");
}

export async function up(sys: LabSystem, rawConfig: LabConfig, opts: UpOptions): Promise<UpReport> {
  const config = checkConfig(rawConfig);
  checkUpOptions(opts);
  checkRoot();
  checkTools();
  const paths = labPaths(config.stateDir);
  const release = acquireLock(paths.lock);
  try {
    const prev = readState(paths.state);
    if (prev !== undefined && (prev.netns !== config.netns || prev.bridge !== config.bridge)) {
      throw new LabError(
        "LAB_BAD_INPUT",
        `${config.stateDir} holds the lab "${prev.netns}" (bridge ${prev.bridge}), not "${config.netns}" (bridge ${config.bridge})`,
        {
          hint: "use the same names, another --state-dir, or `weft-lab down` first",
        },
      );
    }
    const state: LabState = prev ?? {
      version: 1,
      netns: config.netns,
      bridge: config.bridge,
      phase: "building",
      createdAt: nowIso(),
      updatedAt: nowIso(),
      servers: [],
      memoryMiB: opts.memoryMiB,
      vcpus: opts.vcpus,
      diskGiB: opts.diskGiB,
      firmware: opts.firmware,
      processes: {},
    };
    const changed: string[] = [];
    const save = (phase: LabState["phase"]) => {
      state.phase = phase;
      state.updatedAt = nowIso();
      writeState(paths.state, state);
    };
    const step = async (s: UpStep, message: string) => {
      if (opts.onStep) await opts.onStep(s, message);
    };
    const changedStep = (what: string) => {
      changed.push(what);
      if (state.phase !== "building") save("building");
    };
    save(prev === undefined ? "building" : state.phase);

    // 1. Namespace and bridge. A new namespace strands daemons and VMs still attached to an
    // old one, so they are restarted below.
    const networkCreated = await ensureNetwork(sys, config);
    if (networkCreated) changedStep(`created namespace ${config.netns} and bridge ${config.bridge}`);
    await step(
      "network",
      networkCreated
        ? `namespace ${config.netns}, bridge ${config.bridge}: created`
        : `namespace ${config.netns}, bridge ${config.bridge}: present`,
    );

    // 2. Router advertisements.
    let ra = running(state, "ra");
    if (ra !== undefined && networkCreated) {
      await stopProcess(ra);
      ra = undefined;
    }
    if (ra === undefined) {
      await stopLeftovers(config, ["ra"]);
      state.processes["ra"] = await startRouterAdvertiser(sys, config);
      save("building");
      changedStep("started router advertisements");
    }
    await step("ra", `router advertisements: pid ${state.processes["ra"]?.pid}`);

    // 3. The lab's libvirt daemon.
    let virtlogd = running(state, "virtlogd");
    let libvirtd = running(state, "libvirtd");
    const healthy =
      !networkCreated &&
      virtlogd !== undefined &&
      libvirtd !== undefined &&
      (await libvirtResponds(sys, config.stateDir));
    if (!healthy) {
      if (networkCreated && libvirtd !== undefined && (await libvirtResponds(sys, config.stateDir))) {
        // VMs of the old namespace are cut off from the new bridge: power them off.
        for (const name of await listDomains(sys, config.stateDir))
          await destroyServer(sys, config.stateDir, name);
      }
      for (const rec of [libvirtd, virtlogd]) if (rec !== undefined) await stopProcess(rec);
      await stopLeftovers(config, ["libvirt"]);
      const started = await startLibvirt(sys, config);
      virtlogd = started.virtlogd;
      libvirtd = started.libvirtd;
      state.processes["virtlogd"] = virtlogd;
      state.processes["libvirtd"] = libvirtd;
      save("building");
      changedStep("started libvirtd");
    }
    await step("libvirt", `libvirtd: pid ${libvirtd?.pid}, virtlogd: pid ${virtlogd?.pid}`);

    // 4. Accelerator.
    const accel = await chooseAccel({
      request: opts.accel,
      cacheFile: paths.accel,
      kvmDevice: () => kvmDeviceUsable(),
      probe: opts.probe ?? qemuKvmProbe(sys.run),
    });
    if (state.accel !== accel.accel) {
      if (state.accel !== undefined) changedStep(`accelerator ${state.accel} → ${accel.accel}`);
      state.accel = accel.accel;
    }
    await step("accel", `accelerator: ${accel.accel} (${accel.reason})`);

    // 5. Servers.
    const existing = await listDomains(sys, config.stateDir);
    const servers: Array<{ name: string; mac: string }> = [];
    for (let i = 1; i <= opts.servers; i++) {
      const isNew = await ensureServer(sys, config, i, { ...opts, accel: accel.accel }, existing);
      if (isNew) changedStep(`defined ${serverName(i)}`);
      servers.push({ name: serverName(i), mac: serverMac(i) });
    }
    const extraServers = existing.filter((n) => (serverIndex(n) ?? 0) > opts.servers);
    for (const n of extraServers) {
      const i = serverIndex(n);
      if (i !== undefined) servers.push({ name: n, mac: serverMac(i) });
    }
    state.servers = servers;
    Object.assign(state, {
      memoryMiB: opts.memoryMiB,
      vcpus: opts.vcpus,
      diskGiB: opts.diskGiB,
      firmware: opts.firmware,
    });
    save(state.phase);
    await step("servers", `servers: ${servers.map((s) => s.name).join(", ")}`);

    // 6. The controller, in the namespace, serving netboot on the bridge.
    let controller: UpReport["controller"];
    const prevController = running(state, "controller");
    if (prevController !== undefined && networkCreated) await stopProcess(prevController);
    if (prevController !== undefined && !networkCreated) {
      controller = { started: true, process: prevController, already: true };
    } else {
      controller = await startController(
        sys,
        config,
        opts.controllerEntry,
        serverKernelArgs(accel.accel, opts.vcpus),
      );
      if (controller.started) {
        state.processes["controller"] = controller.process;
        changedStep("started the controller");
      } else {
        delete state.processes["controller"];
      }
    }
    await step(
      "controller",
      controller.started ? `controller: pid ${controller.process.pid}` : `controller: ${controller.reason}`,
    );

    // 7. Registration with the controller, and the boot images it serves.
    const reg = await registerServers(config, servers, opts.imageCache);
    await step(
      "register",
      reg.skipped
        ? `registration skipped: ${reg.skipped}`
        : `registered ${servers.length} servers; images: ${reg.images.length ? reg.images.join(", ") : `none in ${opts.imageCache} (build them with npm run images)`}`,
    );

    const alreadyUp = prev?.phase === "up" && changed.length === 0;
    save("up");
    return { alreadyUp, changed, accel, servers, extraServers, controller };
  } finally {
    release();
  }
}

type LeftoverKind = "libvirt" | "ra" | "qemu";

/**
 * Processes of this lab that its state file does not (or no longer) records: daemons are
 * recognised by the PID-file paths on their command lines, VMs by their disk paths. All of
 * these paths are inside this lab's state directory.
 */
function leftoverProcesses(config: LabConfig, kinds: readonly LeftoverKind[]): ProcessRecord[] {
  const p = labPaths(config.stateDir);
  const marks: Array<[LeftoverKind, RegExp, (a: string) => boolean]> = [
    [
      "libvirt",
      /(^|\/)(libvirtd|virtlogd)$/,
      (a) => a === p.libvirt.libvirtdPid || a === p.libvirt.virtlogdPid,
    ],
    ["ra", /(^|\/)dnsmasq$/, (a) => a === `--pid-file=${p.raPid}`],
    ["qemu", /(^|\/)qemu-system-[\w-]+$/, (a) => a.includes(`${p.disks}/`)],
  ];
  const wanted = marks.filter(([k]) => kinds.includes(k));
  return findProcesses((argv) => wanted.some(([, exe, arg]) => exe.test(argv[0] ?? "") && argv.some(arg)));
}

async function stopLeftovers(config: LabConfig, kinds: readonly LeftoverKind[]): Promise<string[]> {
  const stopped: string[] = [];
  for (const rec of leftoverProcesses(config, kinds)) {
    if (await stopProcess(rec)) stopped.push(`${rec.cmd} (pid ${rec.pid})`);
  }
  return stopped;
}

export interface DownOptions {
  /** Also delete logs, the accelerator and QEMU capabilities caches, and the state directory itself. */
  purge: boolean;
}

export interface DownReport {
  removed: string[];
  wasUp: boolean;
}

export async function down(sys: LabSystem, rawConfig: LabConfig, opts: DownOptions): Promise<DownReport> {
  const config = checkConfig(rawConfig);
  checkRoot();
  const paths = labPaths(config.stateDir);
  const removed: string[] = [];
  if (!existsSync(config.stateDir) && !(await netnsExists(sys, config.netns)))
    return { removed, wasUp: false };
  const release = acquireLock(paths.lock);
  try {
    let state: LabState | undefined;
    try {
      state = readState(paths.state);
    } catch {
      state = undefined; // a corrupt state file: remove by names and paths below
    }
    if (state !== undefined && (state.netns !== config.netns || state.bridge !== config.bridge)) {
      throw new LabError(
        "LAB_BAD_INPUT",
        `${config.stateDir} holds the lab "${state.netns}" (bridge ${state.bridge}), not "${config.netns}"`,
      );
    }
    const procs = state?.processes ?? {};

    // The controller first, so it does not react to servers disappearing.
    if (procs["controller"] !== undefined && (await stopProcess(procs["controller"])))
      removed.push(`controller (pid ${procs["controller"].pid})`);

    // Domains, while libvirtd still answers: everything defined in the lab's own daemon is the lab's.
    if (await libvirtResponds(sys, config.stateDir)) {
      for (const name of await listDomains(sys, config.stateDir)) {
        await removeServer(sys, config, name);
        removed.push(`domain ${name}`);
      }
    }
    for (const role of ["libvirtd", "virtlogd", "ra"]) {
      const rec = procs[role];
      if (rec !== undefined && (await stopProcess(rec))) removed.push(`${rec.cmd} (pid ${rec.pid})`);
    }
    removed.push(...(await stopLeftovers(config, ["qemu", "libvirt", "ra"])));
    removed.push(...(await removeNetwork(sys, config)));

    // Files.
    const keep = opts.purge ? new Set<string>() : new Set([paths.accel, paths.raLog, paths.controllerLog]);
    if (existsSync(config.stateDir)) {
      for (const entry of readdirSync(config.stateDir)) {
        const full = `${config.stateDir}/${entry}`;
        if (full === paths.lock || keep.has(full) || (!opts.purge && entry.endsWith(".console.log")))
          continue;
        if (!opts.purge && entry === "libvirt") {
          // Keep the daemons' own logs and libvirt's QEMU capabilities cache (without it
          // the next libvirtd spends about 10 s probing QEMU); drop the rest of its tree.
          for (const sub of readdirSync(full)) {
            if (!sub.endsWith(".log") && sub !== "cache")
              rmSync(`${full}/${sub}`, { recursive: true, force: true });
          }
          continue;
        }
        rmSync(full, { recursive: true, force: true });
      }
      removed.push(
        opts.purge
          ? `state directory ${config.stateDir}`
          : `state in ${config.stateDir} (logs, accelerator and QEMU capabilities caches kept)`,
      );
    }
    return { removed, wasUp: state !== undefined };
  } finally {
    release();
    if (opts.purge) {
      try {
        rmdirSync(config.stateDir);
      } catch {
        // not empty or already gone
      }
    }
  }
}

export interface ServerStatus {
  name: string;
  mac: string;
  power: ServerPower;
  console: string[];
}

export interface LabStatus {
  netns: string;
  bridge: string;
  stateDir: string;
  phase: LabState["phase"] | "absent";
  namespacePresent: boolean;
  libvirtResponds: boolean;
  libvirtUri: string;
  accel: string | undefined;
  processes: Record<string, { pid: number; running: boolean }>;
  servers: ServerStatus[];
}

/** Replays carriage returns and backspaces on one line, as a terminal would show it. */
function renderLine(line: string): string {
  const cells: string[] = [];
  let cursor = 0;
  for (const ch of line) {
    if (ch === "\b") cursor = Math.max(0, cursor - 1);
    else if (ch === "\r") cursor = 0;
    else cells[cursor++] = ch;
  }
  return Array.from(cells, (c) => c ?? " ")
    .join("")
    .trimEnd();
}

/** Firmware output as text: terminal escapes removed, backspaces and carriage returns applied. */
export function cleanConsole(text: string): string {
  const plain = text
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b\[[0-9;?=<>]*[ -/]*[@-~]/g, "")
    // eslint-disable-next-line no-control-regex
    .replace(/\x1b[()][A-Za-z0-9]|\x1bc|\x1b[=>]/g, "")
    .replace(/\r\n/g, "\n")
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x07\x0b\x0c\x0e-\x1f\x7f]/g, "");
  return plain.split("\n").map(renderLine).join("\n");
}

export function consoleTail(file: string, lines: number): string[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const all = cleanConsole(text)
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== "");
  return all.slice(-lines);
}

export async function status(sys: LabSystem, rawConfig: LabConfig, consoleLines = 3): Promise<LabStatus> {
  const config = checkConfig(rawConfig);
  const paths = labPaths(config.stateDir);
  const state = readState(paths.state);
  const responds = await libvirtResponds(sys, config.stateDir);
  const servers: ServerStatus[] = [];
  for (const s of state?.servers ?? []) {
    servers.push({
      name: s.name,
      mac: s.mac,
      power: responds ? await serverPower(sys, config.stateDir, s.name) : "unknown",
      console: consoleTail(paths.console(s.name), consoleLines),
    });
  }
  const processes: LabStatus["processes"] = {};
  for (const [role, rec] of Object.entries(state?.processes ?? {}))
    processes[role] = { pid: rec.pid, running: isRunning(rec) };
  return {
    netns: config.netns,
    bridge: config.bridge,
    stateDir: config.stateDir,
    phase: state?.phase ?? "absent",
    namespacePresent: await netnsExists(sys, config.netns),
    libvirtResponds: responds,
    libvirtUri: `qemu:///system?socket=${paths.libvirt.socket}`,
    accel: state?.accel,
    processes,
    servers,
  };
}

/** The console log of a server the lab has; LAB_UNKNOWN_SERVER otherwise. */
export function consoleFile(rawConfig: LabConfig, name: string): string {
  const config = checkConfig(rawConfig);
  const paths = labPaths(config.stateDir);
  const state = readState(paths.state);
  if (state === undefined)
    throw new LabError("LAB_NOT_UP", `no lab in ${config.stateDir}`, {
      hint: "start one with `weft-lab up`",
    });
  if (!state.servers.some((s) => s.name === name)) {
    throw new LabError("LAB_UNKNOWN_SERVER", `no server "${name}" in this lab`, {
      hint: `servers: ${state.servers.map((s) => s.name).join(", ") || "none"}`,
    });
  }
  return paths.console(name);
}
