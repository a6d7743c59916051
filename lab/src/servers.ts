// The lab's servers as libvirt domains of the lab's own libvirtd, driven with virsh.
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Accel } from "./accel.js";
import { labPaths, libvirtUri, serverMac, serverName, type LabConfig } from "./config.js";
import { serverDomainXml, serverUuid } from "./domain-xml.js";
import type { LabSystem } from "./exec.js";

export interface ServerOptions {
  memoryMiB: number;
  vcpus: number;
  diskGiB: number;
  accel: Accel;
  firmware: "bios" | "uefi";
}

export type ServerPower = "on" | "off" | "unknown";

function virsh(sys: LabSystem, stateDir: string, args: string[], allowFailure = false) {
  return sys.run("virsh", ["-q", "-c", libvirtUri(stateDir), ...args], { timeoutMs: 30_000, allowFailure });
}

export async function listDomains(sys: LabSystem, stateDir: string): Promise<string[]> {
  const r = await virsh(sys, stateDir, ["list", "--all", "--name"]);
  return r.stdout
    .split("\n")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

/** Creates the server's disk if missing and (re)defines its domain. Returns whether the domain is new. */
export async function ensureServer(
  sys: LabSystem,
  config: LabConfig,
  index: number,
  opts: ServerOptions,
  existing: readonly string[],
): Promise<boolean> {
  const paths = labPaths(config.stateDir);
  const name = serverName(index);
  mkdirSync(paths.disks, { recursive: true });
  mkdirSync(paths.domains, { recursive: true });
  const disk = paths.disk(name);
  if (!existsSync(disk)) {
    await sys.run("qemu-img", ["create", "-q", "-f", "qcow2", disk, `${opts.diskGiB}G`]);
  }
  // A domain defined earlier keeps its UUID (libvirt refuses to redefine a name under another).
  let uuid = serverUuid(config.netns, name);
  if (existing.includes(name)) {
    const r = await virsh(sys, config.stateDir, ["domuuid", name], true);
    if (!r.failed && r.stdout.trim() !== "") uuid = r.stdout.trim();
  }
  const xml = serverDomainXml({
    name,
    uuid,
    mac: serverMac(index),
    bridge: config.bridge,
    memoryMiB: opts.memoryMiB,
    vcpus: opts.vcpus,
    accel: opts.accel,
    diskPath: disk,
    consoleLog: paths.console(name),
    firmware: opts.firmware,
    nvramPath: paths.nvram(name),
  });
  const file = path.join(paths.domains, `${name}.xml`);
  writeFileSync(file, xml);
  // Defining again is harmless: it updates the stored definition (for a running domain,
  // from its next start), so a changed option or a half-written domain gets repaired.
  await virsh(sys, config.stateDir, ["define", file]);
  return !existing.includes(name);
}

/** Powers off and undefines a server (NVRAM included) and deletes its disk. */
export async function removeServer(sys: LabSystem, config: LabConfig, name: string): Promise<void> {
  const paths = labPaths(config.stateDir);
  await virsh(sys, config.stateDir, ["destroy", name], true);
  const r = await virsh(sys, config.stateDir, ["undefine", "--nvram", name], true);
  if (r.failed) await virsh(sys, config.stateDir, ["undefine", name], true);
  rmSync(paths.disk(name), { force: true });
  rmSync(paths.nvram(name), { force: true });
}

export async function serverPower(sys: LabSystem, stateDir: string, name: string): Promise<ServerPower> {
  const r = await virsh(sys, stateDir, ["domstate", name], true);
  if (r.failed) return "unknown";
  const s = r.stdout.trim();
  if (s === "running" || s === "paused" || s === "in shutdown" || s === "blocked" || s === "pmsuspended")
    return "on";
  if (s === "shut off" || s === "crashed") return "off";
  return "unknown";
}

export async function destroyServer(sys: LabSystem, stateDir: string, name: string): Promise<void> {
  await virsh(sys, stateDir, ["destroy", name], true);
}
