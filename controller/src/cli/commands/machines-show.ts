import type { Command } from "commander";
import type { EventView, MachineView } from "@weft/wire";
import { type CliContext, withOutput } from "../context.js";
import { render, renderTable } from "../output.js";
import { eventColumns } from "./events.js";

export function register(machines: Command, ctx: CliContext): void {
  withOutput(
    machines.command("show <machine>").description("show a machine (by id, name or MAC) and its history"),
  ).action(async (ref: string, _o, cmd: Command) => {
    const m = await ctx
      .client()
      .get<MachineView & { events: EventView[] }>(`/v1/machines/${encodeURIComponent(ref)}`);
    const format = ctx.format(cmd);
    if (format === "json" || format === "yaml") {
      ctx.out(render(format, m, [], []));
      return;
    }
    const fields: [string, unknown][] = [
      ["id", m.id],
      ["name", m.name],
      ["state", m.state],
      ["target", m.targetState],
      ["last error", m.lastError],
      ["uuid", m.uuid],
      ["serial", m.serial],
      ["firmware", m.firmware],
      ["power", m.powerDriver],
      ["image", m.image],
      ["nics", m.nics.map((n) => `${n.mac}${n.pxe ? " (pxe)" : ""}`).join(", ")],
      ["since", m.stateChangedAt],
    ];
    ctx.out(
      renderTable(
        fields,
        [
          { header: "FIELD", get: (r) => r[0] },
          { header: "VALUE", get: (r) => r[1] },
        ],
        false,
      ),
    );
    ctx.out("\nEVENTS\n");
    ctx.out(renderTable(m.events, eventColumns, format === "wide"));
  });
}
