// HOOK: registering the lab's servers with the controller.
//
// For now this writes <state dir>/servers.json: each server's name, MAC and power driver
// with its parameters, exactly what a machine registration through the controller's API
// will carry. To finish: send each entry to the controller's API (over
// <state dir>/controller.sock) and keep writing the file for tools that read it.
import { libvirtUri, type LabConfig } from "./config.js";
import { labPaths } from "./config.js";
import { writeFileAtomic } from "./state.js";

export interface ServerRegistration {
  name: string;
  mac: string;
  power: { driver: "libvirt"; params: { uri: string; domain: string } };
}

export function serverRegistrations(
  config: LabConfig,
  servers: ReadonlyArray<{ name: string; mac: string }>,
): ServerRegistration[] {
  const uri = libvirtUri(config.stateDir);
  return servers.map((s) => ({
    name: s.name,
    mac: s.mac,
    power: { driver: "libvirt", params: { uri, domain: s.name } },
  }));
}

export async function registerServers(
  config: LabConfig,
  servers: ReadonlyArray<{ name: string; mac: string }>,
): Promise<ServerRegistration[]> {
  const regs = serverRegistrations(config, servers);
  writeFileAtomic(labPaths(config.stateDir).servers, `${JSON.stringify({ servers: regs }, null, 2)}\n`);
  return regs;
}
