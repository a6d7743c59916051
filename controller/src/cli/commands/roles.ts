// weft roles: list, show, create, scale, delete. create and scale follow the role's guests
// with a progress display until every instance runs (or one fails), unless --no-wait.
import type { Command } from "commander";
import { CliError, EXIT } from "../client.js";
import { type CliContext, withOutput } from "../context.js";
import { progressSink } from "../progress.js";
import { render, type Column } from "../output.js";
import { guestColumns, type GuestRow } from "./guests.js";

export interface RoleRow {
  name: string;
  instances: number;
  vip: string | null;
  state: string;
  spec: {
    image: string;
    vcpus: number;
    cpuMhz: number;
    memoryMiB: number;
    diskBytes: number;
    netInKBps: number;
    netOutKBps: number;
    ports: { port: number; protocol: string }[];
  };
  guests: Record<string, number>;
  createdAt: string;
}

const columns: Column<RoleRow>[] = [
  { header: "NAME", get: (r) => r.name },
  { header: "INSTANCES", get: (r) => r.instances },
  { header: "RUNNING", get: (r) => r.guests["running"] ?? 0 },
  { header: "VIP", get: (r) => r.vip },
  { header: "STATE", get: (r) => r.state },
  { header: "IMAGE", get: (r) => r.spec.image },
  {
    header: "CAPS",
    get: (r) =>
      `${r.spec.vcpus}x${r.spec.cpuMhz}MHz ${r.spec.memoryMiB}MiB ${Math.round(r.spec.diskBytes / 1e9)}GB ${(r.spec.netInKBps * 8) / 1000}Mbit`,
    wide: true,
  },
  { header: "PORTS", get: (r) => r.spec.ports.map((p) => `${p.port}/${p.protocol}`).join(","), wide: true },
  { header: "GUESTS", get: (r) => r.guests, wide: true },
];

const seconds = (v: string) => {
  const m = /^(\d+)(s|m|h)?$/.exec(v);
  if (!m) throw new CliError(`bad duration ${v}; use e.g. 90s, 10m`, EXIT.usage);
  return Number(m[1]) * (m[2] === "h" ? 3600 : m[2] === "m" ? 60 : 1);
};

const count = (v: string, what: string) => {
  if (!/^\d+$/.test(v)) throw new CliError(`${what} must be a whole number, got ${v}`, EXIT.usage);
  return Number(v);
};

/** "80", "80/tcp", "53/udp" */
function parsePort(v: string, prev: { port: number; protocol: string }[] = []) {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/.exec(v);
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
    throw new CliError(`bad port ${v}; use e.g. 80 or 53/udp`, EXIT.usage);
  return [...prev, { port: Number(m[1]), protocol: m[2] ?? "tcp" }];
}

/** Follows a role's guests until `instances` of them run; fails when one fails. */
async function follow(ctx: CliContext, role: string, instances: number, timeoutS: number): Promise<void> {
  const sink = progressSink(process.stderr, ctx.env);
  const deadline = Date.now() + timeoutS * 1000;
  const seen = new Map<string, string>();
  try {
    for (;;) {
      const { items } = await ctx
        .client()
        .get<{ items: GuestRow[] }>(`/v1/guests?role=${encodeURIComponent(role)}`);
      for (const g of items) {
        if (seen.get(g.name) !== g.state) {
          sink.line(
            `${g.name} (${g.dip ?? "-"} on ${g.host ?? "-"}): ${g.state}${g.lastError ? `: ${g.lastError}` : ""}`,
          );
          seen.set(g.name, g.state);
        }
      }
      const live = items.filter((g) => g.state !== "deleting");
      const running = live.filter((g) => g.state === "running").length;
      const failed = live.filter((g) => g.state === "failed");
      if (failed.length)
        throw new CliError(
          `${failed.length} guest(s) of ${role} failed: ${failed.map((g) => `${g.name}: ${g.lastError}`).join("; ")}`,
          EXIT.failure,
        );
      if (running >= instances && live.length === instances) {
        sink.update(1, `${running}/${instances} running`);
        return;
      }
      if (Date.now() > deadline)
        throw new CliError(`timed out after ${timeoutS}s: ${running}/${instances} running`, EXIT.failure);
      sink.update(instances ? running / instances : 1, `${running}/${instances} running`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    sink.done();
  }
}

export function register(program: Command, ctx: CliContext): void {
  const roles = program
    .command("roles")
    .alias("role")
    .description("tenant roles: guests behind one VIP; list, show, create, scale, delete");

  withOutput(roles.command("list").alias("ls").description("list roles")).action(async (_o, cmd: Command) => {
    const r = await ctx.client().get<{ items: RoleRow[] }>("/v1/roles");
    ctx.out(render(ctx.format(cmd), r, r.items, columns));
  });

  withOutput(roles.command("show <name>").description("a role and its guests")).action(
    async (name: string, _o, cmd: Command) => {
      const r = await ctx
        .client()
        .get<RoleRow & { items: GuestRow[] }>(`/v1/roles/${encodeURIComponent(name)}`);
      const f = ctx.format(cmd);
      if (f === "json" || f === "yaml") {
        ctx.out(render(f, r, [], columns));
        return;
      }
      ctx.out(render(f, r, [r], columns));
      ctx.out("\n" + render(f, r, r.items, guestColumns));
    },
  );

  withOutput(
    roles
      .command("create <name>")
      .description("create a role of --instances guests; shows progress until they run")
      .requiredOption("--instances <n>", "number of guests")
      .requiredOption("--image <name>", "guest base image (qcow2)")
      .option("--vcpu <n>", "vCPUs per guest (default 1)")
      .option("--cpu <clock>", "CPU share per vCPU as a clock, e.g. 1.6GHz (default)")
      .option("--memory <size>", "memory, e.g. 1.7GiB (default)")
      .option("--disk <size>", "disk size, sparse, e.g. 250GB (default)")
      .option("--disk-iops <n>", "disk IOPS cap")
      .option("--disk-bps <rate>", "disk throughput cap, e.g. 100MB/s")
      .option("--net <rate>", "network cap both ways, e.g. 100Mbit (default)")
      .option("--net-in <rate>", "inbound network cap")
      .option("--net-out <rate>", "outbound network cap")
      .option("--port <port>", "VIP port, e.g. 80 or 53/udp (repeatable; default 80/tcp)", parsePort)
      .option("--no-wait", "answer once the guests are placed")
      .option("--timeout <duration>", "how long to wait for the guests", "10m"),
  ).action(
    async (
      name: string,
      o: {
        instances: string;
        image: string;
        vcpu?: string;
        cpu?: string;
        memory?: string;
        disk?: string;
        diskIops?: string;
        diskBps?: string;
        net?: string;
        netIn?: string;
        netOut?: string;
        port?: { port: number; protocol: string }[];
        wait: boolean;
        timeout: string;
      },
      cmd: Command,
    ) => {
      const instances = count(o.instances, "--instances");
      const spec: Record<string, unknown> = { image: o.image };
      if (o.vcpu !== undefined) spec["vcpus"] = count(o.vcpu, "--vcpu");
      const text: [keyof typeof o, string][] = [
        ["cpu", "cpu"],
        ["memory", "memory"],
        ["disk", "disk"],
        ["diskIops", "diskIops"],
        ["diskBps", "diskBps"],
        ["net", "net"],
        ["netIn", "netIn"],
        ["netOut", "netOut"],
      ];
      for (const [opt, field] of text) if (o[opt] !== undefined) spec[field] = o[opt];
      if (o.port) spec["ports"] = o.port;
      const timeout = seconds(o.timeout);
      const t0 = Date.now();
      const r = await ctx
        .client()
        .request<{ role: RoleRow; guests: GuestRow[] }>("POST", "/v1/roles", { name, instances, spec });
      ctx.err(`role ${r.role.name} created, VIP ${r.role.vip ?? "-"}; ${r.guests.length} guests placed\n`);
      if (o.wait) {
        await follow(ctx, name, instances, timeout);
        ctx.err(
          `all ${instances} guests of ${name} running after ${((Date.now() - t0) / 1000).toFixed(1)}s\n`,
        );
      }
      const after = await ctx
        .client()
        .get<{ items: GuestRow[] }>(`/v1/guests?role=${encodeURIComponent(name)}`);
      ctx.out(render(ctx.format(cmd), { role: r.role, guests: after.items }, after.items, guestColumns));
    },
  );

  roles
    .command("scale <name> <instances>")
    .description("add or remove guests of a role; shows progress until they run")
    .option("--no-wait", "answer once the change is placed")
    .option("--timeout <duration>", "how long to wait for the guests", "10m")
    .action(async (name: string, n: string, o: { wait: boolean; timeout: string }) => {
      const instances = count(n, "instances");
      const r = await ctx
        .client()
        .request<{ role: RoleRow }>("POST", `/v1/roles/${encodeURIComponent(name)}/scale`, { instances });
      ctx.err(`role ${r.role.name} scaled to ${instances}\n`);
      if (o.wait) await follow(ctx, name, instances, seconds(o.timeout));
    });

  roles
    .command("delete <name>")
    .alias("rm")
    .description("delete a role, its guests and its VIP")
    .action(async (name: string) => {
      ctx.err(`deleting role ${name} and its guests...\n`);
      await ctx.client().request("DELETE", `/v1/roles/${encodeURIComponent(name)}`);
      ctx.err(`deleted ${name}\n`);
    });
}
