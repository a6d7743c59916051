// The store layer: every query the controller makes goes through here, so that a second
// database (PostgreSQL) is a contained change. Returns plain views, never Prisma models.
import type { EventView, MachineView } from "@weft/wire";
import { notFound } from "../errors.js";
import type { Db } from "./db.js";
import type { Prisma } from "./generated/client.js";

export interface EventInput {
  subjectType: string;
  subjectId?: string | null;
  actor: string;
  fromState?: string | null;
  toState?: string | null;
  message: string;
  data?: unknown;
}

const machineInclude = { nics: true, image: { select: { name: true } } } as const;
type MachineRow = Prisma.MachineGetPayload<{ include: typeof machineInclude }>;

function machineView(m: MachineRow): MachineView {
  return {
    id: m.id,
    name: m.name,
    uuid: m.uuid,
    serial: m.serial,
    state: m.provisionState,
    targetState: m.targetState,
    lastError: m.lastError,
    firmware: m.firmware,
    powerDriver: m.powerDriver,
    image: m.image?.name ?? null,
    nics: m.nics.map((n) => ({ mac: n.mac, name: n.name, pxe: n.pxe })),
    inventory: m.inventory ?? null,
    stateChangedAt: m.stateChangedAt.toISOString(),
    createdAt: m.createdAt.toISOString(),
  };
}

function eventView(e: Prisma.EventGetPayload<object>): EventView {
  return {
    id: e.id,
    at: e.at.toISOString(),
    subjectType: e.subjectType,
    subjectId: e.subjectId,
    actor: e.actor,
    fromState: e.fromState,
    toState: e.toState,
    message: e.message,
    data: e.data ?? null,
  };
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export class Store {
  constructor(readonly db: Db) {}

  async listMachines(): Promise<MachineView[]> {
    const rows = await this.db.machine.findMany({ include: machineInclude, orderBy: { createdAt: "asc" } });
    return rows.map(machineView);
  }

  /** A machine by id, name or (lower-case) MAC of one of its NICs. */
  async getMachine(ref: string): Promise<MachineView> {
    const key = ref.toLowerCase();
    const row = await this.db.machine.findFirst({
      where: MAC.test(key) ? { nics: { some: { mac: key } } } : { OR: [{ id: ref }, { name: ref }] },
      include: machineInclude,
    });
    if (!row) throw notFound("machine", ref);
    return machineView(row);
  }

  async machineCountsByState(): Promise<Record<string, number>> {
    const groups = await this.db.machine.groupBy({ by: ["provisionState"], _count: { _all: true } });
    return Object.fromEntries(groups.map((g) => [g.provisionState, g._count._all]));
  }

  async recordEvent(e: EventInput, tx: Prisma.TransactionClient = this.db): Promise<EventView> {
    const row = await tx.event.create({
      data: {
        subjectType: e.subjectType,
        subjectId: e.subjectId ?? null,
        actor: e.actor,
        fromState: e.fromState ?? null,
        toState: e.toState ?? null,
        message: e.message,
        ...(e.data === undefined ? {} : { data: e.data as Prisma.InputJsonValue }),
      },
    });
    return eventView(row);
  }

  async listEvents(q: {
    afterId?: number;
    subjectType?: string;
    subjectId?: string;
    limit: number;
  }): Promise<EventView[]> {
    const rows = await this.db.event.findMany({
      where: {
        ...(q.afterId === undefined ? {} : { id: { gt: q.afterId } }),
        ...(q.subjectType === undefined ? {} : { subjectType: q.subjectType }),
        ...(q.subjectId === undefined ? {} : { subjectId: q.subjectId }),
      },
      orderBy: { id: q.afterId === undefined ? "desc" : "asc" },
      take: q.limit,
    });
    // Without a cursor the newest `limit` events are wanted, still shown oldest first.
    if (q.afterId === undefined) rows.reverse();
    return rows.map(eventView);
  }
}
