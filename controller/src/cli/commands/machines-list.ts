import type { Command } from "commander";
import type { MachineView } from "@weft/wire";
import { type CliContext, withOutput } from "../context.js";
import { age, render, type Column } from "../output.js";

export const machineColumns: Column<MachineView>[] = [
  { header: "ID", get: (m) => m.id, wide: true },
  { header: "NAME", get: (m) => m.name ?? m.id },
  { header: "STATE", get: (m) => m.state },
  { header: "MAC", get: (m) => (m.nics.find((n) => n.pxe) ?? m.nics[0])?.mac },
  { header: "IMAGE", get: (m) => m.image },
  { header: "POWER", get: (m) => m.powerDriver, wide: true },
  { header: "FIRMWARE", get: (m) => m.firmware, wide: true },
  { header: "AGE", get: (m) => age(m.stateChangedAt) },
  { header: "LAST ERROR", get: (m) => m.lastError, wide: true },
];

export function register(machines: Command, ctx: CliContext): void {
  withOutput(machines.command("list").alias("ls").description("list machines")).action(
    async (_o, cmd: Command) => {
      const r = await ctx.client().get<{ items: MachineView[] }>("/v1/machines");
      ctx.out(render(ctx.format(cmd), r, r.items, machineColumns));
    },
  );
}
