import type { Command } from "commander";
import type { EventView } from "@weft/wire";
import { CliError, EXIT } from "../client.js";
import { type CliContext, withOutput } from "../context.js";
import { render, renderTable, type Column } from "../output.js";

export const eventColumns: Column<EventView>[] = [
  { header: "ID", get: (e) => e.id, wide: true },
  { header: "TIME", get: (e) => e.at },
  { header: "SUBJECT", get: (e) => (e.subjectId ? `${e.subjectType}/${e.subjectId}` : e.subjectType) },
  { header: "ACTOR", get: (e) => e.actor },
  { header: "CHANGE", get: (e) => (e.toState ? `${e.fromState ?? "-"} -> ${e.toState}` : "") },
  { header: "MESSAGE", get: (e) => e.message },
];

export function register(program: Command, ctx: CliContext): void {
  withOutput(program.command("events").description("show recent events; --follow streams new ones"))
    .option("-f, --follow", "keep streaming new events until interrupted")
    .option("--subject <type[/id]>", "only events of this subject, e.g. machine/ID")
    .option("--limit <n>", "how many recent events", "50")
    .action(async (o: { follow?: boolean; subject?: string; limit: string }, cmd: Command) => {
      const format = ctx.format(cmd);
      const limit = Number(o.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new CliError("--limit takes 1 to 1000", EXIT.usage);
      const q = new URLSearchParams({ limit: String(limit) });
      if (o.subject) {
        const [type, id] = o.subject.split("/", 2);
        q.set("subjectType", type!);
        if (id) q.set("subjectId", id);
      }
      if (!o.follow) {
        const r = await ctx.client().get<{ items: EventView[] }>(`/v1/events?${q}`);
        ctx.out(render(format, r, r.items, eventColumns));
        return;
      }
      // Streaming: one line per event (JSON lines for -o json), header once for tables.
      q.set("follow", "true");
      const abort = new AbortController();
      process.once("SIGINT", () => abort.abort());
      let first = true;
      await ctx.client().stream(
        `/v1/events?${q}`,
        (data) => {
          const e = data as EventView;
          if (format === "json") ctx.out(JSON.stringify(e) + "\n");
          else if (format === "yaml") ctx.out("---\n" + render("yaml", e, [], []));
          else {
            const lines = renderTable([e], eventColumns, format === "wide").split("\n");
            ctx.out((first ? lines[0] + "\n" : "") + lines[1] + "\n");
            first = false;
          }
        },
        abort.signal,
      );
    });
}
