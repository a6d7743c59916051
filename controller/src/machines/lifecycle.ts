// Every machine state change goes through fire(): it checks the transition table, writes the
// new state with a conditional update (so two controllers cannot both move one machine),
// records the event in the same transaction, and sets the new state's deadline.
import type { EventView, MachineState } from "@weft/wire";
import { conflict, notFound } from "../errors.js";
import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import type { Prisma } from "../store/generated/client.js";
import type { Store } from "../store/store.js";
import { STATES, edgeFor, type Trigger } from "./states.js";

export interface FireOptions {
  actor: string;
  /** Why; for fail/timeout this becomes last_error. */
  reason?: string;
  data?: unknown;
  /** Other columns to write in the same transaction (image, target state...). */
  patch?: Prisma.MachineUncheckedUpdateManyInput;
  /** Runs inside the transaction after the state change (create a job, revoke a token...). */
  also?: (tx: Prisma.TransactionClient) => Promise<void>;
}

export interface Clock {
  now(): Date;
}
export const systemClock: Clock = { now: () => new Date() };

export class Lifecycle {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly db: Db,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    /** Deadlines that override STATES' defaults (operator configuration). */
    private readonly timeouts: Partial<Record<MachineState, number>> = {},
  ) {}

  private timeoutFor(state: MachineState): number | null {
    const base = STATES[state].timeoutSeconds;
    return base === null ? null : (this.timeouts[state] ?? base);
  }

  /** Runs fn with the machine's lock held (in this process; the database arbitrates across). */
  async withLock<T>(machineId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(machineId) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    const tail = run.catch(() => undefined);
    this.locks.set(machineId, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(machineId) === tail) this.locks.delete(machineId);
    }
  }

  fire(machineId: string, trigger: Trigger, opts: FireOptions): Promise<EventView> {
    return this.withLock(machineId, () => this.fireLocked(machineId, trigger, opts));
  }

  private async fireLocked(machineId: string, trigger: Trigger, opts: FireOptions): Promise<EventView> {
    const m = await this.db.machine.findUnique({ where: { id: machineId } });
    if (!m) throw notFound("machine", machineId);
    const from = m.provisionState as MachineState;
    const edge = edgeFor(trigger, from);
    if (!edge) {
      throw conflict("INVALID_TRANSITION", `machine ${m.name ?? m.id} is ${from}: cannot ${trigger}`, {
        from,
        trigger,
      });
    }
    const to = edge.to;
    const now = this.clock.now();
    const timeout = this.timeoutFor(to);
    const failing = to === "failed";
    const event = await this.db.$transaction(async (tx) => {
      const moved = await tx.machine.updateMany({
        where: { id: machineId, provisionState: from },
        data: {
          ...opts.patch,
          provisionState: to,
          ...(to === from ? {} : { stateChangedAt: now }),
          deadlineAt: timeout === null ? null : new Date(now.getTime() + timeout * 1000),
          // last_error is kept until the machine leaves failed for good (it explains the failure).
          ...(failing
            ? { lastError: opts.reason ?? edge.why }
            : from === "failed"
              ? { lastError: null }
              : {}),
        },
      });
      if (moved.count !== 1) {
        throw conflict("STATE_CHANGED", `machine ${m.name ?? m.id} changed state meanwhile; try again`);
      }
      await opts.also?.(tx);
      return this.store.recordEvent(
        {
          subjectType: "machine",
          subjectId: machineId,
          actor: opts.actor,
          fromState: from,
          toState: to,
          message: opts.reason ? `${edge.why}: ${opts.reason}` : edge.why,
          data: opts.data,
        },
        tx,
      );
    });
    this.log.info({ machineId, from, to, trigger, actor: opts.actor }, "machine state changed");
    return event;
  }

  /** Moves every machine whose waiting state outlived its deadline to failed. */
  async sweepTimeouts(): Promise<number> {
    const now = this.clock.now();
    const late = await this.db.machine.findMany({
      where: { deadlineAt: { lt: now } },
      select: { id: true, provisionState: true },
    });
    let n = 0;
    for (const m of late) {
      const limit = m.provisionState in STATES ? this.timeoutFor(m.provisionState as MachineState) : null;
      try {
        await this.fire(m.id, "timeout", {
          actor: "controller",
          reason: `no progress in ${m.provisionState} for ${limit ?? "?"} s`,
        });
        n++;
      } catch (err) {
        // Moved on meanwhile (another controller, or the agent just reported): not late any more.
        this.log.debug({ err, machineId: m.id }, "timeout sweep skipped a machine");
      }
    }
    return n;
  }
}
