// HOOK: registering the lab's servers with the controller.
//
// For now this writes <state dir>/servers.json. Each entry has the shape of the controller's
// machine registration body (POST /v1/machines: name, macs, powerDriver, powerParams), so
// wiring it means sending each entry over <state dir>/controller.sock with the admin token
// from <state dir>/controller/admin.token, treating NAME_IN_USE/MAC_IN_USE as "already
// registered" (up runs again on a lab that is up), and keeping the file for tools that read it.
import { labPaths, libvirtUri, type LabConfig } from "./config.js";
import { writeFileAtomic } from "./state.js";

export interface ServerRegistration {
  name: string;
  macs: string[];
  powerDriver: "libvirt";
  powerParams: { uri: string; domain: string };
}

export function serverRegistrations(
  config: LabConfig,
  servers: ReadonlyArray<{ name: string; mac: string }>,
): ServerRegistration[] {
  const uri = libvirtUri(config.stateDir);
  return servers.map((s) => ({
    name: s.name,
    macs: [s.mac],
    powerDriver: "libvirt",
    powerParams: { uri, domain: s.name },
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
