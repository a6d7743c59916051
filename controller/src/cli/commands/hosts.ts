// weft hosts list: hosts with their guest capacity, total / used / free.
import type { Command } from "commander";
import type { HostView } from "../../guests/service.js";
import { type CliContext, withOutput } from "../context.js";
import { render, type Column } from "../output.js";

type HostRow = HostView;

const ghz = (mhz: number) => `${(mhz / 1000).toFixed(1)}GHz`;
const gib = (mib: number) => `${(mib / 1024).toFixed(1)}GiB`;
const gb = (b: number) => `${Math.round(b / 1e9)}GB`;

const columns: Column<HostRow>[] = [
  { header: "NAME", get: (h) => h.name },
  { header: "STATE", get: (h) => h.state },
  { header: "ADDRESS", get: (h) => h.address },
  { header: "ACCEL", get: (h) => (h.kvm ? "kvm" : "tcg") },
  { header: "GUESTS", get: (h) => h.capacity.used.guests },
  { header: "CPU USED/TOTAL", get: (h) => `${ghz(h.capacity.used.cpuMhz)}/${ghz(h.capacity.total.cpuMhz)}` },
  { header: "MEM FREE", get: (h) => gib(h.capacity.free.memoryMiB) },
  { header: "DISK FREE", get: (h) => gb(h.capacity.free.diskBytes) },
  { header: "CORES", get: (h) => `${h.cpus}x${ghz(h.cpuMhz)}`, wide: true },
  {
    header: "MEM USED/TOTAL",
    get: (h) => `${gib(h.capacity.used.memoryMiB)}/${gib(h.capacity.total.memoryMiB)}`,
    wide: true,
  },
  {
    header: "NET FREE",
    get: (h) => `${Math.round((h.capacity.free.netKBps * 8) / 1000)}Mbit`,
    wide: true,
  },
];

export function register(program: Command, ctx: CliContext): void {
  const hosts = program.command("hosts").alias("host").description("hosts that run guests");
  withOutput(hosts.command("list").alias("ls").description("hosts with used and free capacity")).action(
    async (_o, cmd: Command) => {
      const r = await ctx.client().get<{ items: HostRow[] }>("/v1/hosts");
      ctx.out(render(ctx.format(cmd), r, r.items, columns));
    },
  );
}
