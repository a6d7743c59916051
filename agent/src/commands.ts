// Running controller commands asynchronously: one at a time in arrival order, each reporting
// RUNNING (with stage and progress), then SUCCEEDED or FAILED with a {type, code, message,
// details} error. Reports of one command leave strictly in order. A command that asks for a
// reboot gets it only after its SUCCEEDED report went out (or definitively failed to). The
// final report is what the controller's lifecycle waits on, so it is retried through a
// controller restart (FINAL_REPORT_PATIENCE_MS) instead of being dropped after a few tries.
import type { Command, CommandReport } from "@weft/wire";
import type { Clock } from "./clock.js";
import type { ControllerClient, ParsedCommand } from "./client.js";
import type { CommandContext, CommandOutcome, ProgressUpdate } from "./context.js";
import { AgentError, errorBody, isAgentError } from "./errors.js";
import { installHost } from "./install.js";
import type { Logger } from "./log.js";
import { wipeDisks } from "./wipe.js";

export type Handler = (command: Command, ctx: CommandContext) => Promise<CommandOutcome>;

export const defaultHandler: Handler = async (command, ctx) => {
  switch (command.kind) {
    case "install-host":
      return installHost(command.params, ctx);
    case "wipe":
      return wipeDisks(command.params, ctx);
    case "reboot":
      return { message: "rebooting", then: "reboot" };
    case "guest-network":
      throw new AgentError(
        "unsupported",
        "COMMAND_UNSUPPORTED",
        "guest-network runs on an installed host only",
      );
  }
};

export interface CommandRunnerOptions {
  client: ControllerClient;
  log: Logger;
  /** Everything a handler needs except `progress`, which the runner supplies per command. */
  context: Omit<CommandContext, "progress">;
  reboot: () => Promise<void>;
  handler?: Handler;
  /** Called when the controller refuses our token while reporting: the agent must stop. */
  onFatal: (err: AgentError) => void;
  /** Called before the final report of a command that reboots goes out, with a promise that
   * settles once the reboot was asked for. */
  onLeaving?: (rebooted: Promise<void>) => void;
}

/** Longer than a controller upgrade or crash-restart; shorter than its 30-minute deploy deadline. */
export const FINAL_REPORT_PATIENCE_MS = 15 * 60_000;

/** Serialises the reports of one command. */
class ReportQueue {
  private tail: Promise<void> = Promise.resolve();
  constructor(
    private readonly client: ControllerClient,
    private readonly id: string,
    private readonly log: Logger,
    private readonly onFatal: (err: AgentError) => void,
  ) {}

  /** With `final`, an undelivered report is tried again (backing off to 30 s) for `patienceMs`. */
  push(report: CommandReport, final?: { clock: Clock; patienceMs: number }): Promise<void> {
    this.tail = this.tail.then(async () => {
      const start = final?.clock.now() ?? 0;
      for (let n = 1; ; n++) {
        try {
          await this.client.report(this.id, report);
          return;
        } catch (err) {
          const fatal = isAgentError(err) && err.type === "unauthorized";
          if (fatal) this.onFatal(err);
          const again = !fatal && final !== undefined && final.clock.now() - start < final.patienceMs;
          this.log.warn(
            again ? "command report not delivered; trying again" : "command report not delivered",
            {
              state: report.state,
              stage: report.stage,
              error: (err as Error).message,
            },
          );
          if (!again) return;
          await final.clock.sleep(Math.min(30_000, 1000 * 2 ** Math.min(n, 5)));
        }
      }
    });
    return this.tail;
  }
}

export class CommandRunner {
  private readonly seen = new Set<string>();
  private readonly running = new Set<string>();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly opts: CommandRunnerOptions) {}

  /** Ids of commands accepted and not finished (sent with each heartbeat). */
  runningIds(): string[] {
    return [...this.running];
  }

  /** Resolves when every accepted command has finished and reported. */
  idle(): Promise<void> {
    return this.queue;
  }

  accept(parsed: ParsedCommand): void {
    if (!parsed.ok) {
      this.refuse(parsed);
      return;
    }
    const { command } = parsed;
    if (this.seen.has(command.id)) return; // the controller repeats commands until it hears of them
    this.seen.add(command.id);
    this.running.add(command.id);
    this.opts.log.info("command accepted", { id: command.id, kind: command.kind });
    this.queue = this.queue
      .then(() => this.run(command))
      .catch((err: unknown) =>
        this.opts.log.error("command runner error", { id: command.id, error: String(err) }),
      );
  }

  private refuse(parsed: Extract<ParsedCommand, { ok: false }>): void {
    const { log, client, onFatal } = this.opts;
    if (parsed.id === null || this.seen.has(parsed.id)) {
      log.warn("ignoring an unreadable command", { kind: parsed.kind });
      return;
    }
    this.seen.add(parsed.id);
    const formatIssue = parsed.issues.find((i) => i.path.join(".") === "params.image.format");
    const err = formatIssue
      ? new AgentError("unsupported", "IMAGE_FORMAT_UNSUPPORTED", "this agent installs ext4.gz images only", {
          details: { issues: parsed.issues },
        })
      : new AgentError(
          "invalid_request",
          "COMMAND_INVALID",
          `command ${parsed.kind ?? "?"} is malformed or unknown`,
          {
            details: { issues: parsed.issues },
          },
        );
    log.warn("command refused", { id: parsed.id, kind: parsed.kind, code: err.code });
    void new ReportQueue(client, parsed.id, log, onFatal).push({
      state: "FAILED",
      message: err.message,
      error: err.toBody(),
    });
  }

  private async run(command: Command): Promise<void> {
    const { client, log, onFatal } = this.opts;
    const clog = log.child({ command: command.id, kind: command.kind });
    const reports = new ReportQueue(client, command.id, clog, onFatal);
    const final = { clock: this.opts.context.clock, patienceMs: FINAL_REPORT_PATIENCE_MS };
    let lastProgress = 0;
    const progress = (u: ProgressUpdate): void => {
      const p = u.progress === undefined ? undefined : Math.min(1, Math.max(lastProgress, u.progress));
      if (p !== undefined) lastProgress = p;
      clog.info("progress", {
        stage: u.stage,
        pct: p === undefined ? undefined : Math.round(p * 100),
        msg: u.message,
      });
      void reports.push({
        state: "RUNNING",
        stage: u.stage.slice(0, 64),
        ...(p === undefined ? {} : { progress: p }),
        ...(u.message === undefined ? {} : { message: u.message.slice(0, 2000) }),
      });
    };
    progress({ stage: "start", progress: 0 });
    let outcome: CommandOutcome;
    try {
      outcome = await (this.opts.handler ?? defaultHandler)(command, {
        ...this.opts.context,
        log: clog,
        progress,
      });
    } catch (err) {
      const body = errorBody(err);
      clog.error("command failed", { code: body.code, error: body.message });
      await reports.push({ state: "FAILED", message: body.message.slice(0, 2000), error: body }, final);
      this.running.delete(command.id);
      return;
    }
    clog.info("command succeeded", { msg: outcome.message });
    // The controller may revoke this agent's token as it takes this report (an installed
    // machine's maintenance token dies with it): whoever polls must stop before the report goes
    // out, so that a refusal heard afterwards cannot stop the process short of its reboot.
    let rebooted: () => void = () => undefined;
    if (outcome.then === "reboot") this.opts.onLeaving?.(new Promise<void>((r) => (rebooted = r)));
    await reports.push({ state: "SUCCEEDED", progress: 1, message: outcome.message.slice(0, 2000) }, final);
    this.running.delete(command.id);
    if (outcome.then === "reboot") {
      clog.info("rebooting");
      try {
        await this.opts.reboot();
      } catch (err) {
        clog.error("reboot failed", { error: (err as Error).message });
      } finally {
        rebooted();
      }
    }
  }
}
