// Maintenance mode: enlist with the boot nonce (once) for a per-machine token, then heartbeat
// and run what the controller asks for.
//
// Heartbeat timing: the agent waits intervalSeconds × (0.3 + 0.3 × random), i.e. 30-60 % of
// the interval the controller announced, the way Ironic's agent does. The controller can then
// treat `intervalSeconds` as the deadline by which it must have heard from a live agent: a beat
// always lands well within it, and one lost beat plus its retry still does; the randomness
// keeps a rack that booted together from beating in step.
import type { Inventory } from "@weft/wire";
import type { Clock, Random } from "./clock.js";
import type { ControllerClient } from "./client.js";
import { CommandRunner, type Handler } from "./commands.js";
import type { MaintenanceConfig } from "./config.js";
import type { CommandContext } from "./context.js";
import { AgentError, isAgentError } from "./errors.js";
import type { Logger } from "./log.js";

/** Seconds to wait before the next heartbeat: 30-60 % of the interval. */
export function heartbeatDelayMs(intervalSeconds: number, random: Random): number {
  return Math.round(intervalSeconds * 1000 * (0.3 + 0.3 * random()));
}

/** Where a token obtained with the one-time nonce survives an agent restart (not a reboot). */
export interface TokenStore {
  load(): Promise<{ machineId: string; token: string } | null>;
  save(value: { machineId: string; token: string }): Promise<void>;
}

export const memoryTokenStore = (): TokenStore => {
  let v: { machineId: string; token: string } | null = null;
  return {
    load: () => Promise.resolve(v),
    save: (x) => {
      v = x;
      return Promise.resolve();
    },
  };
};

export interface MaintenanceDeps {
  config: MaintenanceConfig;
  client: ControllerClient;
  log: Logger;
  clock: Clock;
  random: Random;
  inventory: () => Promise<Inventory>;
  context: Omit<CommandContext, "progress" | "firmware">;
  reboot: () => Promise<void>;
  tokens: TokenStore;
  uptimeSeconds: () => number;
  handler?: Handler;
  /** Stops the loop (tests, SIGTERM). */
  signal?: AbortSignal;
  /** Heartbeat interval before the controller has named one. */
  initialIntervalSeconds?: number;
}

/** Waits between enlist attempts while the controller is unreachable: 2 s doubling to 60 s. */
const enlistBackoffMs = (n: number, random: Random): number =>
  Math.min(60_000, 2000 * 2 ** n) * (0.5 + random() / 2);

async function enlist(
  deps: MaintenanceDeps,
  inventory: Inventory,
): Promise<{ machineId: string; token: string }> {
  const saved = await deps.tokens.load();
  if (saved) {
    deps.log.info("using the token from an earlier run", { machine: saved.machineId });
    return saved;
  }
  for (let n = 0; ; n++) {
    try {
      const r = await deps.client.enlist({ nonce: deps.config.nonce, inventory });
      await deps.tokens.save(r);
      return r;
    } catch (err) {
      if (isAgentError(err) && err.type === "unavailable") {
        const wait = enlistBackoffMs(n, deps.random);
        deps.log.warn("controller unreachable; enlisting again later", {
          waitMs: Math.round(wait),
          error: err.message,
        });
        await deps.clock.sleep(wait, deps.signal);
        continue;
      }
      if (isAgentError(err) && err.type === "unauthorized") {
        throw new AgentError(
          "unauthorized",
          "NONCE_REFUSED",
          `the controller refused the boot nonce (${err.message}); reboot the machine through the controller for a new one`,
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }
}

export async function runMaintenance(deps: MaintenanceDeps): Promise<void> {
  const { log, client, clock } = deps;
  log.info("collecting inventory");
  const inventory = await deps.inventory();
  log.info("inventory", {
    firmware: inventory.firmware,
    cpus: inventory.cpu.count,
    memMiB: Math.round(inventory.memoryBytes / 1048576),
    disks: inventory.disks.map((d) => d.name).join(",") || "none",
    nics: inventory.nics.map((n) => n.mac).join(",") || "none",
  });
  const { machineId, token } = await enlist(deps, inventory);
  client.setToken(token);
  log.info("enlisted", { machine: machineId });

  let fatal: AgentError | null = null;
  let leaving: Promise<void> | null = null;
  const stop = new AbortController();
  const onFatal = (err: AgentError): void => {
    // Once a command reboots the machine, a refused token is expected, not fatal.
    if (leaving) return;
    fatal ??= err;
    stop.abort(err);
  };
  const runner = new CommandRunner({
    client,
    log,
    context: { ...deps.context, firmware: inventory.firmware },
    reboot: deps.reboot,
    onFatal,
    onLeaving: (rebooted) => {
      leaving = rebooted;
      stop.abort();
    },
    ...(deps.handler === undefined ? {} : { handler: deps.handler }),
  });
  const signal = deps.signal ? AbortSignal.any([deps.signal, stop.signal]) : stop.signal;
  let interval = deps.initialIntervalSeconds ?? 10;
  while (!signal.aborted) {
    try {
      const res = await client.heartbeat({
        mode: "maintenance",
        uptimeSeconds: deps.uptimeSeconds(),
        running: runner.runningIds(),
      });
      interval = res.intervalSeconds;
      // Nothing new starts while the machine is going down.
      if (!leaving) for (const c of res.commands) runner.accept(c);
    } catch (err) {
      if (leaving) break;
      if (isAgentError(err) && err.type === "unauthorized") {
        onFatal(
          new AgentError(
            "unauthorized",
            "TOKEN_REFUSED",
            `the controller refused this agent's token: ${err.message}`,
            { cause: err },
          ),
        );
        break;
      }
      log.warn("heartbeat failed", { error: (err as Error).message });
    }
    try {
      await clock.sleep(heartbeatDelayMs(interval, deps.random), signal);
    } catch {
      break;
    }
  }
  if (leaving) {
    log.info("heartbeats stopped for the reboot");
    await leaving;
  }
  if (fatal) throw fatal;
}
