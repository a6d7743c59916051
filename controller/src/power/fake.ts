// An in-memory power driver for tests: machines are entries in a map, every action is
// recorded, and the "endpoint" can be made unreachable or made to fail.
import { z } from "zod";
import {
  PowerError,
  requireParams,
  type PowerAction,
  type PowerDriver,
  type PowerState,
  type ValidationResult,
} from "./driver.js";

export const fakePowerParams = z.strictObject({ id: z.string().min(1).max(128) });
export type FakePowerParams = z.infer<typeof fakePowerParams>;

export interface FakePowerCall {
  action: PowerAction;
  id: string;
}

export class FakePowerDriver implements PowerDriver<FakePowerParams> {
  readonly name: string;
  readonly calls: FakePowerCall[] = [];
  readonly #machines = new Map<string, PowerState>();
  #reachable = true;
  #failNext: string | undefined;

  constructor(name = "fake") {
    this.name = name;
  }

  /** Adds (or resets) a machine the fake endpoint knows about. */
  addMachine(id: string, state: PowerState = "off"): this {
    this.#machines.set(id, state);
    return this;
  }

  removeMachine(id: string): this {
    this.#machines.delete(id);
    return this;
  }

  /** The state as the fake endpoint holds it, without recording a call. */
  peek(id: string): PowerState | undefined {
    return this.#machines.get(id);
  }

  setReachable(reachable: boolean): this {
    this.#reachable = reachable;
    return this;
  }

  /** The next action fails with POWER_ACTION_FAILED and this message. */
  failNext(message: string): this {
    this.#failNext = message;
    return this;
  }

  validate(params: unknown): ValidationResult<FakePowerParams> {
    const r = fakePowerParams.safeParse(params);
    if (r.success) return { ok: true, params: r.data };
    return {
      ok: false,
      error: new PowerError("POWER_BAD_PARAMS", `fake power parameters: ${z.prettifyError(r.error)}`, {
        details: { driver: this.name, issues: r.error.issues },
      }),
    };
  }

  async on(params: unknown): Promise<void> {
    const id = this.#enter("on", params);
    this.#machines.set(id, "on");
  }

  async off(params: unknown): Promise<void> {
    const id = this.#enter("off", params);
    this.#machines.set(id, "off");
  }

  async cycle(params: unknown): Promise<void> {
    const id = this.#enter("cycle", params);
    this.#machines.set(id, "on");
  }

  async status(params: unknown): Promise<PowerState> {
    const id = this.#enter("status", params);
    return this.#machines.get(id) ?? "unknown";
  }

  #enter(action: PowerAction, params: unknown): string {
    const { id } = requireParams(this, params);
    this.calls.push({ action, id });
    if (!this.#reachable) {
      throw new PowerError("POWER_UNREACHABLE", `fake power endpoint unreachable (${action} ${id})`, {
        details: { driver: this.name, action, id },
      });
    }
    if (!this.#machines.has(id)) {
      throw new PowerError("POWER_TARGET_NOT_FOUND", `fake power endpoint has no machine "${id}"`, {
        details: { driver: this.name, action, id },
      });
    }
    if (this.#failNext !== undefined) {
      const message = this.#failNext;
      this.#failNext = undefined;
      throw new PowerError("POWER_ACTION_FAILED", message, { details: { driver: this.name, action, id } });
    }
    return id;
  }
}
