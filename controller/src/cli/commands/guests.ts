// weft guests: list, show, delete.
import type { Command } from "commander";
import type { GuestView } from "../../guests/service.js";
import { type CliContext, withOutput } from "../context.js";
import { age, render, type Column } from "../output.js";

/** A guest as the API answers it. */
export type GuestRow = GuestView;

export const guestColumns: Column<GuestRow>[] = [
  { header: "NAME", get: (g) => g.name },
  { header: "ROLE", get: (g) => g.role },
  { header: "HOST", get: (g) => g.host },
  { header: "STATE", get: (g) => g.state },
  { header: "DIP", get: (g) => g.dip },
  { header: "VCPU", get: (g) => `${g.vcpus}x${(g.cpuMhz / 1000).toFixed(1)}GHz` },
  { header: "MEMORY", get: (g) => `${g.memoryMiB}MiB` },
  { header: "DISK", get: (g) => `${Math.round(g.diskBytes / 1e9)}GB`, wide: true },
  { header: "NET", get: (g) => `${(g.netInKBps * 8) / 1000}/${(g.netOutKBps * 8) / 1000}Mbit`, wide: true },
  { header: "IMAGE", get: (g) => g.image, wide: true },
  { header: "AGE", get: (g) => age(g.createdAt) },
  { header: "ERROR", get: (g) => g.lastError, wide: true },
];

export function register(program: Command, ctx: CliContext): void {
  const guests = program.command("guests").alias("guest").description("guest VMs: list, show, delete");

  withOutput(
    guests.command("list").alias("ls").description("list guests").option("--role <name>", "only this role's"),
  ).action(async (o: { role?: string }, cmd: Command) => {
    const q = o.role ? `?role=${encodeURIComponent(o.role)}` : "";
    const r = await ctx.client().get<{ items: GuestRow[] }>(`/v1/guests${q}`);
    ctx.out(render(ctx.format(cmd), r, r.items, guestColumns));
  });

  withOutput(guests.command("show <name>").description("one guest")).action(
    async (name: string, _o, cmd: Command) => {
      const g = await ctx.client().get<GuestRow>(`/v1/guests/${encodeURIComponent(name)}`);
      const f = ctx.format(cmd);
      ctx.out(render(f === "table" ? "wide" : f, g, [g], guestColumns));
    },
  );

  guests
    .command("delete <name>")
    .alias("rm")
    .description("delete a guest: its domain and overlay (never the base); the VIP forgets it")
    .action(async (name: string) => {
      await ctx.client().request("DELETE", `/v1/guests/${encodeURIComponent(name)}`);
      ctx.err(`deleted ${name}\n`);
    });
}
