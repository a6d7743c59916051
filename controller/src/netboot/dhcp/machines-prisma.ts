// MachineHooks on the store: a first PXE sighting becomes a `discovered` Machine with its Nic
// and an Event, in one transaction. Two controllers racing on the same MAC are settled by the
// unique Nic.mac (and Machine.uuid) columns: the loser sees P2002 and finds the winner's row.
import type { Db } from "../../store/db.js";
import type { MachineHooks, PxeClientInfo } from "./machines.js";

function isUniqueViolation(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { code?: unknown }).code === "P2002";
}

export interface PrismaMachineHooksOptions {
  /**
   * isKnown() answers from the set of all NIC MACs, read again when a MAC is not in it and the
   * set is older than this (default 2000 ms): one query per interval instead of one per packet.
   */
  knownRefreshMs?: number;
}

export class PrismaMachineHooks implements MachineHooks {
  private known = new Set<string>();
  private loadedAt = Number.NEGATIVE_INFINITY;
  private loading: Promise<void> | undefined;
  private readonly refreshMs: number;

  constructor(
    private readonly db: Db,
    opts: PrismaMachineHooksOptions = {},
  ) {
    this.refreshMs = opts.knownRefreshMs ?? 2000;
  }

  async isKnown(mac: string): Promise<boolean> {
    if (this.known.has(mac)) return true;
    if (Date.now() - this.loadedAt > this.refreshMs) await this.reload();
    return this.known.has(mac);
  }

  private reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const started = Date.now();
        const rows = await this.db.nic.findMany({ select: { mac: true } });
        this.known = new Set(rows.map((r) => r.mac));
        this.loadedAt = started;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  async onPxeClient(info: PxeClientInfo): Promise<void> {
    if ((await this.db.nic.findUnique({ where: { mac: info.mac }, select: { id: true } })) !== null) {
      this.known.add(info.mac);
      return;
    }
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
      this.known.add(info.mac);
    } catch (e) {
      // Someone else recorded this MAC (or UUID) first: nothing left to do.
      if (!isUniqueViolation(e)) throw e;
    }
  }
}
