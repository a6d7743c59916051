// The power drivers the controller ships. The fake driver is for tests and is not registered.
import { PowerDriverRegistry } from "./driver.js";
import { LibvirtPowerDriver, type LibvirtPowerDriverOptions } from "./libvirt.js";

export * from "./driver.js";
export { LibvirtPowerDriver, libvirtPowerParams, classifyLibvirtMessage, powerStateOf } from "./libvirt.js";
export type { LibvirtPowerParams, LibvirtPowerDriverOptions } from "./libvirt.js";

export interface PowerDriversOptions {
  libvirt?: LibvirtPowerDriverOptions;
}

/** The registry the daemon starts with: libvirt now; Redfish and IPMI register here later. */
export function defaultPowerDrivers(options: PowerDriversOptions = {}): PowerDriverRegistry {
  return new PowerDriverRegistry([new LibvirtPowerDriver(options.libvirt ?? {})]);
}
