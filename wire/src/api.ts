import { z } from "zod";

/** Lifecycle states of a machine (the transition table lives in the controller). */
export const MachineState = z.enum([
  "discovered",
  "enlisting",
  "ready",
  "deploying",
  "rebooting",
  "host-ready",
  "releasing",
  "failed",
]);
export type MachineState = z.infer<typeof MachineState>;

export const NicView = z.object({ mac: z.string(), name: z.string().nullable(), pxe: z.boolean() });

export const MachineView = z.object({
  id: z.string(),
  name: z.string().nullable(),
  uuid: z.string().nullable(),
  serial: z.string().nullable(),
  state: z.string(),
  targetState: z.string().nullable(),
  lastError: z.string().nullable(),
  firmware: z.string().nullable(),
  powerDriver: z.string().nullable(),
  image: z.string().nullable(),
  nics: z.array(NicView),
  inventory: z.unknown().nullable(),
  stateChangedAt: z.string(),
  createdAt: z.string(),
});
export type MachineView = z.infer<typeof MachineView>;

export const EventView = z.object({
  id: z.number().int(),
  at: z.string(),
  subjectType: z.string(),
  subjectId: z.string().nullable(),
  actor: z.string(),
  fromState: z.string().nullable(),
  toState: z.string().nullable(),
  message: z.string(),
  data: z.unknown().nullable(),
});
export type EventView = z.infer<typeof EventView>;

export const StatusView = z.object({
  version: z.string(),
  startedAt: z.string(),
  uptimeSeconds: z.number(),
  database: z.object({ provider: z.string(), migrations: z.number().int() }),
  machines: z.record(z.string(), z.number().int()),
  listeners: z.array(z.string()),
});
export type StatusView = z.infer<typeof StatusView>;

export const VersionView = z.object({ version: z.string(), node: z.string() });
export type VersionView = z.infer<typeof VersionView>;

export const List = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item) });
