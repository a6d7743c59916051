// Names, addresses and paths of one lab. Everything here is derived from a few inputs
// (state directory, namespace and bridge names) so two labs - a developer's and a test's -
// never share anything.
import path from "node:path";
import { LabError } from "./errors.js";

export interface LabConfig {
  /** Holds everything the lab creates: state, disks, logs, the libvirt daemon's files. */
  stateDir: string;
  /** Network namespace (must start with "weft"). */
  netns: string;
  /** Provisioning bridge inside the namespace (must start with "weft", at most 15 characters). */
  bridge: string;
}

export const DEFAULT_CONFIG: Omit<LabConfig, "stateDir"> = { netns: "weft-lab", bridge: "weftbr0" };
export const DEFAULT_STATE_DIR = "/var/lib/weft-lab";

/** The provisioning network inside the namespace; nothing is routed out of it. */
export const NETWORK = {
  ipv4: "10.77.0.1",
  ipv4Prefix: 24,
  /** Unique-local prefix announced by router advertisements (lifetime 0: not a default router). */
  ipv6: "fd77:77::1",
  ipv6Prefix: 64,
  ipv6Net: "fd77:77::",
  /** A fixed bridge MAC, so the bridge does not take the lowest port MAC as ports come and go. */
  bridgeMac: "02:77:00:00:00:01",
} as const;

export const MAX_SERVERS = 99;

/**
 * vCPUs per server when none are asked for: the machine's cores shared among the servers, one
 * to two each. Under TCG each vCPU is a host thread of emulation, so more than the cores only
 * adds contention; a lone server with two does its image write and host boot about a quarter
 * faster than with one.
 */
export function autoVcpus(servers: number, cores: number): number {
  return Math.min(2, Math.max(1, Math.floor(cores / Math.max(1, servers))));
}

export function serverName(index: number): string {
  return `srv${index}`;
}

/** 52:54:00:77:00:NN with NN the index in hex (srv1 → :01, srv10 → :0a). */
export function serverMac(index: number): string {
  return `52:54:00:77:00:${index.toString(16).padStart(2, "0")}`;
}

/** The index of "srvN", or undefined for anything else. */
export function serverIndex(name: string): number | undefined {
  const m = /^srv([1-9][0-9]*)$/.exec(name);
  if (m === null) return undefined;
  const i = Number(m[1]);
  return i <= MAX_SERVERS ? i : undefined;
}

export interface LabPaths {
  state: string;
  lock: string;
  accel: string;
  servers: string;
  disks: string;
  domains: string;
  raPid: string;
  raLog: string;
  controllerLog: string;
  controllerData: string;
  controllerSocket: string;
  /** Where the controller writes its admin token. */
  controllerToken: string;
  libvirt: {
    root: string;
    etc: string;
    run: string;
    lib: string;
    cache: string;
    log: string;
    sock: string;
    socket: string;
    libvirtdPid: string;
    virtlogdPid: string;
    libvirtdLog: string;
    virtlogdLog: string;
  };
  disk(name: string): string;
  nvram(name: string): string;
  console(name: string): string;
}

export function labPaths(stateDir: string): LabPaths {
  const j = (...p: string[]) => path.join(stateDir, ...p);
  const lv = (...p: string[]) => j("libvirt", ...p);
  return {
    state: j("lab.json"),
    lock: j("lab.lock"),
    accel: j("accel.json"),
    servers: j("servers.json"),
    disks: j("disks"),
    domains: j("domains"),
    raPid: j("ra.pid"),
    raLog: j("ra.log"),
    controllerLog: j("controller.log"),
    controllerData: j("controller"),
    // The default lab's controller answers where the weft CLI looks by default, so `weft`
    // works unchanged; any other lab (tests) keeps everything in its state directory.
    controllerSocket:
      path.resolve(stateDir) === DEFAULT_STATE_DIR ? "/run/weft/weft.sock" : j("controller.sock"),
    controllerToken:
      path.resolve(stateDir) === DEFAULT_STATE_DIR
        ? "/var/lib/weft/admin.token"
        : j("controller", "admin.token"),
    libvirt: {
      root: lv(),
      etc: lv("etc"),
      run: lv("run"),
      lib: lv("lib"),
      cache: lv("cache"),
      log: lv("log"),
      sock: lv("sock"),
      socket: lv("sock", "libvirt-sock"),
      libvirtdPid: lv("libvirtd.pid"),
      virtlogdPid: lv("virtlogd.pid"),
      libvirtdLog: lv("libvirtd.log"),
      virtlogdLog: lv("virtlogd.log"),
    },
    disk: (name) => j("disks", `${name}.qcow2`),
    nvram: (name) => j("disks", `${name}.nvram.fd`),
    console: (name) => j(`${name}.console.log`),
  };
}

/** The libvirt URI of the lab's own daemon, usable from inside and outside the namespace. */
export function libvirtUri(stateDir: string): string {
  return `qemu:///system?socket=${labPaths(stateDir).libvirt.socket}`;
}

/** Refuses names and paths the lab cannot use safely; returns the config unchanged. */
export function checkConfig(config: LabConfig): LabConfig {
  if (!/^weft[a-z0-9-]{0,27}$/.test(config.netns)) {
    throw new LabError(
      "LAB_BAD_INPUT",
      `namespace name "${config.netns}": must start with "weft", lower-case letters, digits and "-", at most 31 characters`,
    );
  }
  if (!/^weft[a-z0-9]{1,11}$/.test(config.bridge)) {
    throw new LabError(
      "LAB_BAD_INPUT",
      `bridge name "${config.bridge}": must start with "weft", letters and digits, at most 15 characters`,
    );
  }
  if (!path.isAbsolute(config.stateDir)) {
    throw new LabError("LAB_BAD_INPUT", `state directory "${config.stateDir}": must be an absolute path`);
  }
  const dir = path.resolve(config.stateDir);
  // The lab's libvirt daemon sees its own directories mounted over /run and the libvirt paths.
  for (const hidden of [
    "/run",
    "/var/run",
    "/etc/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
  ]) {
    if (dir === hidden || dir.startsWith(`${hidden}/`)) {
      throw new LabError("LAB_BAD_INPUT", `state directory "${dir}": must not be under ${hidden}`);
    }
  }
  if (dir === "/") throw new LabError("LAB_BAD_INPUT", `state directory "/" is not allowed`);
  // Unix socket paths are limited to 107 bytes; the admin socket has the longest name.
  const longest = path.join(dir, "libvirt", "sock", "libvirt-admin-sock");
  if (Buffer.byteLength(longest) > 107) {
    throw new LabError(
      "LAB_BAD_INPUT",
      `state directory "${dir}" is too long for the libvirt sockets under it`,
    );
  }
  return { ...config, stateDir: dir };
}
