// What the DHCP server tells the rest of the controller about the machines it sees, and asks it.
import type { Firmware } from "./policy.js";

export interface PxeClientInfo {
  mac: string;
  /** Option 93, first value. */
  arch: number | undefined;
  firmware: Firmware | undefined;
  /** Option 97. */
  uuid: string | undefined;
  vendorClass: string | undefined;
  userClasses: string[] | undefined;
  hostname: string | undefined;
}

export interface MachineHooks {
  /**
   * A PXE client was seen (called once per MAC per server process). The first sighting of a
   * MAC makes a `discovered` machine. Errors are logged by the server and do not stop the reply.
   */
  onPxeClient(info: PxeClientInfo): Promise<void>;
  /** Whether the MAC belongs to a machine the controller knows (such clients get boot options). */
  isKnown(mac: string): Promise<boolean>;
}

/** No machine store: nothing is known, sightings are dropped. */
export const noMachineHooks: MachineHooks = {
  onPxeClient: async () => {},
  isKnown: async () => false,
};
