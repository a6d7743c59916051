// MachineHooks on the store: a first PXE sighting becomes a `discovered` Machine with its Nic
// and an Event, in one transaction. Two controllers racing on the same MAC are settled by the
// unique Nic.mac (and Machine.uuid) columns: the loser sees P2002 and finds the winner's row.
import type { Db } from "../../store/db.js";
import type { MachineHooks, PxeClientInfo } from "./machines.js";

function isUniqueViolation(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === "P2002";
}

export class PrismaMachineHooks implements MachineHooks {
  constructor(private readonly db: Db) {}

  async isKnown(mac: string): Promise<boolean> {
    return (await this.db.nic.findUnique({ where: { mac }, select: { id: true } })) !== null;
  }

  async onPxeClient(info: PxeClientInfo): Promise<void> {
    if (await this.isKnown(info.mac)) return;
    try {
      await this.db.$transaction(async (tx) => {
        // Another NIC of the same machine may have booted before: the firmware UUID joins them.
        const sameUuid = info.uuid
          ? await tx.machine.findUnique({ where: { uuid: info.uuid }, select: { id: true } })
          : null;
        if (sameUuid) {
          await tx.nic.create({ data: { machineId: sameUuid.id, mac: info.mac, pxe: true } });
          return;
        }
        const machine = await tx.machine.create({
          data: {
            provisionState: "discovered",
            ...(info.uuid !== undefined ? { uuid: info.uuid } : {}),
            ...(info.arch !== undefined ? { arch: info.arch } : {}),
            ...(info.firmware !== undefined ? { firmware: info.firmware } : {}),
            nics: { create: { mac: info.mac, pxe: true } },
          },
          select: { id: true },
        });
        await tx.event.create({
          data: {
            subjectType: "machine",
            subjectId: machine.id,
            actor: "dhcp",
            fromState: null,
            toState: "discovered",
            message: `first PXE request from ${info.mac}`,
            data: {
              mac: info.mac,
              arch: info.arch ?? null,
              uuid: info.uuid ?? null,
              vendorClass: info.vendorClass ?? null,
              userClasses: info.userClasses ?? null,
            },
          },
        });
      });
    } catch (e) {
      // Someone else recorded this MAC (or UUID) first: nothing left to do.
      if (!isUniqueViolation(e)) throw e;
    }
  }
}
