// The power interface: how the controller turns a machine on and off, whatever sits behind
// it (libvirt in the lab; Redfish or IPMI on real hardware later). A driver is stateless:
// every call carries the machine's stored driver parameters, validated by the driver itself.
//
// Semantics every driver keeps, so callers (the state machine, the operator CLI) can rely
// on them whatever the hardware:
//   on     - powered on when it returns; already on is not an error.
//   off    - hard power off (pulling the plug); already off is not an error.
//   cycle  - off then on; a machine that was off is simply powered on.
//   status - 'on', 'off', or 'unknown' when the target answers with anything else.
// Failures are PowerErrors with a stable code; nothing else escapes a driver.

/** What a driver reports about a machine's power. */
export type PowerState = "on" | "off" | "unknown";

export type PowerAction = "on" | "off" | "cycle" | "status";

/**
 * Stable error codes. Callers branch on these, never on messages.
 * - POWER_BAD_PARAMS: the stored parameters do not fit the driver (no I/O was attempted).
 * - POWER_UNKNOWN_DRIVER: no driver registered under that name.
 * - POWER_TARGET_NOT_FOUND: the management endpoint answered but does not know the target
 *   (a libvirt domain that does not exist, a BMC without that system).
 * - POWER_UNREACHABLE: the management endpoint did not answer (socket missing, timeout).
 * - POWER_ACTION_FAILED: the endpoint answered and refused or failed the action.
 */
export const POWER_ERROR_CODES = [
  "POWER_BAD_PARAMS",
  "POWER_UNKNOWN_DRIVER",
  "POWER_TARGET_NOT_FOUND",
  "POWER_UNREACHABLE",
  "POWER_ACTION_FAILED",
] as const;
export type PowerErrorCode = (typeof POWER_ERROR_CODES)[number];

const HTTP_STATUS: Record<PowerErrorCode, number> = {
  POWER_BAD_PARAMS: 400,
  POWER_UNKNOWN_DRIVER: 400,
  POWER_TARGET_NOT_FOUND: 404,
  POWER_UNREACHABLE: 503,
  POWER_ACTION_FAILED: 502,
};

export interface PowerErrorOptions {
  cause?: unknown;
  /** Machine-readable context: driver name, action, offending fields. */
  details?: Record<string, unknown>;
}

export class PowerError extends Error {
  override readonly name = "PowerError";
  readonly code: PowerErrorCode;
  readonly httpStatus: number;
  readonly details: Record<string, unknown>;

  constructor(code: PowerErrorCode, message: string, options: PowerErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.httpStatus = HTTP_STATUS[code];
    this.details = options.details ?? {};
  }
}

export function isPowerError(err: unknown, code?: PowerErrorCode): err is PowerError {
  return err instanceof PowerError && (code === undefined || err.code === code);
}

/** Result of validate(): the parsed parameters, or the reason they are refused. */
export type ValidationResult<P> = { ok: true; params: P } | { ok: false; error: PowerError };

export interface PowerDriver<P = unknown> {
  /** Registry key, stored with each machine ("libvirt", later "redfish", "ipmi"). */
  readonly name: string;
  /** Checks parameters only: cheap, no I/O, no side effects. */
  validate(params: unknown): ValidationResult<P>;
  on(params: unknown): Promise<void>;
  off(params: unknown): Promise<void>;
  cycle(params: unknown): Promise<void>;
  status(params: unknown): Promise<PowerState>;
}

/** Validates or throws POWER_BAD_PARAMS; drivers call this first in every action. */
export function requireParams<P>(driver: Pick<PowerDriver<P>, "validate">, params: unknown): P {
  const result = driver.validate(params);
  if (!result.ok) throw result.error;
  return result.params;
}

/** Drivers by name. The controller builds one at start-up and looks machines' drivers up in it. */
export class PowerDriverRegistry {
  readonly #drivers = new Map<string, PowerDriver>();

  constructor(drivers: Iterable<PowerDriver> = []) {
    for (const d of drivers) this.register(d);
  }

  register(driver: PowerDriver): this {
    if (this.#drivers.has(driver.name)) {
      throw new Error(`power driver "${driver.name}" is already registered`);
    }
    this.#drivers.set(driver.name, driver);
    return this;
  }

  has(name: string): boolean {
    return this.#drivers.has(name);
  }

  names(): string[] {
    return [...this.#drivers.keys()].sort();
  }

  /** The driver, or POWER_UNKNOWN_DRIVER. */
  get(name: string): PowerDriver {
    const d = this.#drivers.get(name);
    if (d === undefined) {
      throw new PowerError("POWER_UNKNOWN_DRIVER", `no power driver named "${name}"`, {
        details: { driver: name, known: this.names() },
      });
    }
    return d;
  }

  /** Validates a (driver, params) pair as an API body would carry it: no I/O. */
  validate(name: string, params: unknown): ValidationResult<unknown> {
    const d = this.#drivers.get(name);
    if (d === undefined) {
      return {
        ok: false,
        error: new PowerError("POWER_UNKNOWN_DRIVER", `no power driver named "${name}"`, {
          details: { driver: name, known: this.names() },
        }),
      };
    }
    return d.validate(params);
  }
}
