import type { Command } from "commander";
import type { MachineView } from "@weft/wire";
import { CliError, EXIT } from "../client.js";
import type { CliContext } from "../context.js";
import { progressSink } from "../progress.js";

interface JobView {
  id: string;
  kind: string;
  state: string;
  progress: number;
  error: string | null;
  steps: { name: string; state: string }[];
}

/** Watches a job and its machine until the machine reaches `until` or fails. */
async function watch(
  ctx: CliContext,
  jobId: string,
  machineRef: string,
  until: string[],
  timeoutS: number,
): Promise<void> {
  const sink = progressSink(process.stderr, ctx.env);
  const deadline = Date.now() + timeoutS * 1000;
  let lastState = "";
  let lastStage = "";
  try {
    for (;;) {
      const [job, m] = await Promise.all([
        ctx.client().get<JobView>(`/v1/jobs/${jobId}`),
        ctx.client().get<MachineView>(`/v1/machines/${encodeURIComponent(machineRef)}`),
      ]);
      const stage = job.steps.at(-1)?.name ?? job.state;
      if (m.state !== lastState) {
        sink.line(`${m.name ?? m.id}: ${lastState ? `${lastState} -> ` : ""}${m.state}`);
        lastState = m.state;
      }
      if (stage !== lastStage && job.steps.length) {
        sink.line(`${job.kind}: ${stage}`);
        lastStage = stage;
      }
      if (until.includes(m.state)) {
        sink.update(1, m.state);
        return;
      }
      if (m.state === "failed")
        throw new CliError(
          `${m.name ?? m.id} failed: ${m.lastError ?? job.error ?? "unknown"}`,
          EXIT.failure,
        );
      if (Date.now() > deadline)
        throw new CliError(`timed out after ${timeoutS}s; the machine is ${m.state}`, EXIT.failure);
      sink.update(job.progress, `${m.state} / ${stage}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    sink.done();
  }
}

const seconds = (v: string) => {
  const m = /^(\d+)(s|m|h)?$/.exec(v);
  if (!m) throw new CliError(`bad duration ${v}; use e.g. 90s, 10m`, EXIT.usage);
  return Number(m[1]) * (m[2] === "h" ? 3600 : m[2] === "m" ? 60 : 1);
};

export function register(machines: Command, ctx: CliContext): void {
  machines
    .command("deploy <machine>")
    .description("install a host image on a ready machine; answers at once unless --wait")
    .requiredOption("--image <name>", "host image to install")
    .option("--disk <name>", "target disk (default: the first fixed disk)")
    .option("--wait", "show progress until the machine is host-ready")
    .option("--timeout <duration>", "with --wait", "30m")
    .action(async (ref: string, o: { image: string; disk?: string; wait?: boolean; timeout: string }) => {
      const r = await ctx
        .client()
        .request<{ job: string; machine: MachineView }>(
          "POST",
          `/v1/machines/${encodeURIComponent(ref)}/deploy`,
          { image: o.image, ...(o.disk ? { disk: o.disk } : {}) },
        );
      ctx.out(`${r.machine.name ?? r.machine.id} ${r.machine.state} (job ${r.job})\n`);
      if (o.wait) await watch(ctx, r.job, r.machine.id, ["host-ready"], seconds(o.timeout));
    });

  machines
    .command("release <machine>")
    .description("wipe the machine's disk and return it to ready")
    .option("--wait", "show progress until the machine is ready")
    .option("--timeout <duration>", "with --wait", "20m")
    .action(async (ref: string, o: { wait?: boolean; timeout: string }) => {
      const r = await ctx
        .client()
        .request<{ job: string; machine: MachineView }>(
          "POST",
          `/v1/machines/${encodeURIComponent(ref)}/release`,
          {},
        );
      ctx.out(`${r.machine.name ?? r.machine.id} ${r.machine.state} (job ${r.job})\n`);
      if (o.wait) await watch(ctx, r.job, r.machine.id, ["ready"], seconds(o.timeout));
    });

  machines
    .command("retry <machine>")
    .description("retry a failed machine: power-cycle it into enlistment")
    .action(async (ref: string) => {
      const m = await ctx
        .client()
        .request<MachineView>("POST", `/v1/machines/${encodeURIComponent(ref)}/retry`, {});
      ctx.out(`${m.name ?? m.id} ${m.state}\n`);
    });

  machines
    .command("power <action> <machine>")
    .description("power on|off|cycle|status through the machine's power driver")
    .action(async (action: string, ref: string) => {
      if (!["on", "off", "cycle", "status"].includes(action)) {
        throw new CliError(`unknown power action ${action}; use on, off, cycle or status`, EXIT.usage);
      }
      const r = await ctx
        .client()
        .request<{ machine: string; state: string }>(
          "POST",
          `/v1/machines/${encodeURIComponent(ref)}/power`,
          { action },
        );
      ctx.out(`${r.machine} power ${r.state}\n`);
    });
}
