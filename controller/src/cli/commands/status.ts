import type { Command } from "commander";
import type { StatusView } from "@weft/wire";
import { type CliContext, withOutput } from "../context.js";
import { render } from "../output.js";

export function register(program: Command, ctx: CliContext): void {
  withOutput(
    program.command("status").description("show the controller's health and a count of machines by state"),
  ).action(async (_o, cmd: Command) => {
    const s = await ctx.client().get<StatusView>("/v1/status");
    const rows = [
      ["version", s.version],
      ["uptime", `${s.uptimeSeconds}s`],
      ["database", `${s.database.provider} (${s.database.migrations} migrations)`],
      ["listening", s.listeners.join(", ")],
      ...Object.entries(s.machines).map(([state, n]) => [`machines ${state}`, String(n)]),
    ] as [string, string][];
    if (!Object.keys(s.machines).length) rows.push(["machines", "0"]);
    ctx.out(
      render(ctx.format(cmd), s, rows, [
        { header: "FIELD", get: (r) => r[0] },
        { header: "VALUE", get: (r) => r[1] },
      ]),
    );
  });
}
