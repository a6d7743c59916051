// TFTP throughput on loopback: Weft against tftpd-hpa and atftpd, all fetched by the same
// client (atftp), at blksize 512, 1468, and 1468 with windowsize 16. Weft runs twice: on its
// native UDP channel (what the daemon uses) and on node:dgram (its fallback), to show what
// the channel is worth.
//
//   npx tsx controller/bench/tftp.ts [--size MiB] [--reps N]
//
// Everything runs inside a network namespace made for the bench (weft-tftpb-*), so no
// datagram touches the host's own loopback; the bench re-runs itself in it and deletes it at
// the end. The namespace also has a veth pair with a documentation address (192.0.2.1):
// tftpd-hpa resolves its --address with AI_ADDRCONFIG, which fails when loopback is the only
// interface with an address.
//
// Weft runs in its own process, like the C servers; all of them listen on free loopback
// ports. tftpd-hpa is not installed (it conflicts with atftpd): its package is downloaded
// with `apt-get download` and unpacked with `dpkg-deb -x` into a cache directory under the
// temp directory, once, before entering the namespace. Runs are interleaved server by server
// so that load from elsewhere on the machine falls on all of them alike; the table shows the
// median and the best of the runs. Every process started here is stopped by its PID,
// including on Ctrl-C.

import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { TftpServer } from "../src/netboot/tftp/index.js";
import { Netns, uniqueName } from "../test/helpers/netns.js";
import type { DataPath, TftpTransferEvent } from "../src/netboot/tftp/index.js";
import { decodePacket, encodePacket, Opcode } from "../src/netboot/tftp/packet.js";

const HOST = "127.0.0.1";
const FILE = "bench.bin";
const CLIENT_TIMEOUT_MS = 120_000;

const { values: flags } = parseArgs({
  options: {
    size: { type: "string", default: "64" },
    reps: { type: "string", default: "5" },
    verbose: { type: "boolean", default: false },
    "serve-weft": { type: "string" },
    "data-path": { type: "string", default: "native" },
    "in-netns": { type: "boolean", default: false },
  },
});
const sizeMiB = Number(flags.size);
const reps = Number(flags.reps);
const verbose = flags.verbose;
if (!(sizeMiB > 0 && sizeMiB <= 1024 && reps > 0 && reps <= 20)) {
  console.error("usage: tftp.ts [--size MiB (1..1024)] [--reps N (1..20)]");
  process.exit(2);
}

interface Setting {
  readonly name: string;
  readonly options: readonly string[];
}
const settings: Setting[] = [
  { name: "blksize 512", options: [] },
  { name: "blksize 1468", options: ["blksize 1468"] },
  { name: "1468 + window 16", options: ["blksize 1468", "windowsize 16"] },
];

interface Server {
  readonly name: string;
  port: number;
  /** CPU time used so far by the server, in milliseconds. */
  cpuMs: () => number;
  /** For servers that fork per transfer: measure the CPU of the children during a fetch. */
  sampleChildren?: () => { stop: () => number };
  /** Why this server is not measured, when it is not. */
  skipped?: string;
}

const children = new Set<ChildProcess>();

/** utime+stime of a process and of its reaped children (tftpd-hpa forks one per transfer). */
function procCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14..17 of proc(5), counted from the state field (3) here.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/** Sum of utime+stime over the live children of `pid`, sampled; the last sample of each wins. */
function childCpuSampler(pid: number): { stop: () => number } {
  const seen = new Map<string, number>();
  const sample = () => {
    let list = "";
    try {
      list = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8");
    } catch {
      return;
    }
    for (const child of list.split(" ").filter(Boolean)) {
      try {
        seen.set(child, procCpuMs(Number(child)) - 0);
      } catch {
        // exited between the listing and the read
      }
    }
  };
  const timer = setInterval(sample, 5);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return [...seen.values()].reduce((a, b) => a + b, 0);
    },
  };
}

/** Weft in its own process, like the C servers: prints its port, then one line per transfer. */
async function serveWeft(root: string, dataPath: DataPath): Promise<void> {
  const server = new TftpServer({ root, host: HOST, port: 0, dataPath });
  server.on("transfer-complete", (e) => console.log(JSON.stringify(e)));
  const { port } = await server.listen();
  console.log(JSON.stringify({ port }));
  process.once("SIGTERM", () => void server.close().then(() => process.exit(0)));
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      children.delete(child);
      resolve();
      return;
    }
    const killer = setTimeout(() => process.kill(child.pid as number, "SIGKILL"), 2000);
    child.once("exit", () => {
      clearTimeout(killer);
      children.delete(child);
      resolve();
    });
    process.kill(child.pid, "SIGTERM");
  });
}

function exec(
  cmd: string,
  args: string[],
  cwd?: string,
  timeout = 120_000,
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

async function freePort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, HOST, r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once the server at `port` answers a read request for `name`. */
async function waitReady(port: number, name: string, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, HOST, r));
  try {
    while (Date.now() < deadline) {
      const answered = await new Promise<boolean>((resolve) => {
        const onMessage = (msg: Buffer) => {
          clearTimeout(t);
          try {
            resolve(decodePacket(msg).op === Opcode.DATA);
          } catch {
            resolve(false);
          }
        };
        // Remove the listener on timeout too, or every retry leaves one behind.
        const t = setTimeout(() => {
          s.off("message", onMessage);
          resolve(false);
        }, 200);
        s.once("message", onMessage);
        s.send(encodePacket({ op: Opcode.RRQ, filename: name, mode: "octet", options: [] }), port, HOST);
      });
      if (answered) return true;
    }
    return false;
  } finally {
    s.close();
  }
}

/** The tftpd-hpa binary, unpacked from its Debian package into a cache directory. */
async function tftpdHpa(): Promise<string> {
  const cache = path.join(tmpdir(), "weft-bench-cache", "tftpd-hpa");
  const binary = path.join(cache, "usr", "sbin", "in.tftpd");
  if (existsSync(binary)) return binary;
  const work = await mkdtemp(path.join(tmpdir(), "weft-bench-deb-"));
  try {
    const dl = await exec("apt-get", ["download", "tftpd-hpa"], work);
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (deb === undefined) throw new Error(`apt-get download tftpd-hpa failed: ${dl.out.trim().slice(-300)}`);
    await mkdir(cache, { recursive: true });
    const x = await exec("dpkg-deb", ["-x", path.join(work, deb), cache]);
    if (x.code !== 0 || !existsSync(binary)) throw new Error(`dpkg-deb -x failed: ${x.out.trim()}`);
    return binary;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function startChild(name: string, cmd: string, args: string[], port: number): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  if (!(await waitReady(port, "ready"))) {
    await stopChild(child);
    throw new Error(`${name} did not answer on port ${port}: ${stderr.trim().slice(0, 300)}`);
  }
  return child;
}

async function fetchOnce(port: number, setting: Setting): Promise<number | undefined> {
  const args = ["--get", "-r", FILE, "-l", "/dev/null", ...setting.options.flatMap((o) => ["--option", o])];
  const started = process.hrtime.bigint();
  const res = await exec("atftp", [...args, HOST, String(port)], undefined, CLIENT_TIMEOUT_MS);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (res.code !== 0) {
    console.error(`  atftp failed on port ${port} (${setting.name}): ${res.out.trim().slice(-200)}`);
    return undefined;
  }
  return sizeMiB / seconds;
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Weft in its own process on one data path; its transfer events are collected in `events`. */
async function startWeft(
  name: string,
  dataPath: DataPath,
  root: string,
  events: TftpTransferEvent[],
): Promise<Server> {
  const server: Server = { name, port: 0, cpuMs: () => 0 };
  try {
    const child = spawn(
      process.execPath,
      [...process.execArgv, process.argv[1] as string, "--serve-weft", root, "--data-path", dataPath],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    children.add(child);
    let buffered = "";
    const ready = new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name} did not start`)), 30_000);
      child.stdout?.on("data", (d: Buffer) => {
        buffered += d.toString();
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffered.slice(0, nl)) as { port?: number } & TftpTransferEvent;
          buffered = buffered.slice(nl + 1);
          if (line.port !== undefined && line.file === undefined) {
            clearTimeout(t);
            resolve(line.port);
          } else events.push(line);
        }
      });
    });
    server.port = await ready;
    server.cpuMs = () => procCpuMs(child.pid as number);
  } catch (err) {
    server.skipped = (err as Error).message;
  }
  return server;
}

async function main(): Promise<void> {
  process.once("SIGINT", () => {
    for (const child of children) if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    process.exit(130);
  });
  const dir = await mkdtemp(path.join(tmpdir(), "weft-bench-tftp-"));
  const root = path.join(dir, "root");
  await mkdir(root);
  await writeFile(path.join(root, FILE), randomBytes(sizeMiB * 1024 * 1024));
  await writeFile(path.join(root, "ready"), "ok");

  const weftEvents: TftpTransferEvent[] = [];
  const servers: Server[] = [
    await startWeft("weft", "native", root, weftEvents),
    await startWeft("weft (dgram)", "dgram", root, weftEvents),
  ];

  const hpa: Server = { name: "tftpd-hpa", port: 0, cpuMs: () => 0 };
  try {
    const binary = await tftpdHpa();
    hpa.port = await freePort();
    const child = await startChild(
      "tftpd-hpa",
      binary,
      ["--foreground", "--listen", "--address", `${HOST}:${hpa.port}`, "--secure", "--user", "root", root],
      hpa.port,
    );
    // in.tftpd forks a child per transfer and does not account for it: sample the children.
    hpa.sampleChildren = () => childCpuSampler(child.pid as number);
    hpa.cpuMs = () => procCpuMs(child.pid as number);
  } catch (err) {
    hpa.skipped = (err as Error).message;
  }
  servers.push(hpa);

  const atftpd: Server = { name: "atftpd", port: 0, cpuMs: () => 0 };
  try {
    atftpd.port = await freePort();
    // atftpd drops to nobody by default, and the bench root is private to this user.
    const child = await startChild(
      "atftpd",
      "/usr/sbin/atftpd",
      [
        ...["--daemon", "--no-fork", "--port", String(atftpd.port), "--bind-address", HOST],
        ...["--user", "root", "--group", "root", "--logfile", "/dev/null", root],
      ],
      atftpd.port,
    );
    atftpd.cpuMs = () => procCpuMs(child.pid as number);
  } catch (err) {
    atftpd.skipped = (err as Error).message;
  }
  servers.push(atftpd);

  const live = servers.filter((s) => s.skipped === undefined);
  const results = new Map<string, number[]>(); // "server|setting" -> MiB/s
  const cpu = new Map<string, number[]>(); // "server|setting" -> CPU ms per transfer
  const load0 = loadavg()[0] ?? 0;
  console.error(`bench: ${sizeMiB} MiB, ${reps} runs each, servers: ${live.map((s) => s.name).join(", ")}`);
  try {
    for (const setting of settings) {
      for (let r = 0; r < reps; r++) {
        for (const server of live) {
          const cpuBefore = server.cpuMs();
          const sampler = server.sampleChildren?.();
          const mibs = await fetchOnce(server.port, setting);
          const childCpu = sampler?.stop() ?? 0;
          if (mibs === undefined) continue;
          const cpuKey = `${server.name}|${setting.name}`;
          cpu.set(cpuKey, [...(cpu.get(cpuKey) ?? []), server.cpuMs() - cpuBefore + childCpu]);
          if (verbose) console.error(`  ${setting.name} ${server.name}: ${mibs.toFixed(1)} MiB/s`);
          const key = `${server.name}|${setting.name}`;
          results.set(key, [...(results.get(key) ?? []), mibs]);
        }
      }
      console.error(`  done: ${setting.name}`);
    }
  } finally {
    for (const child of [...children]) await stopChild(child);
    await rm(dir, { recursive: true, force: true });
  }

  const wrongSize = weftEvents.filter((e) => e.file === FILE && e.bytes !== sizeMiB * 1024 * 1024);
  if (wrongSize.length > 0) console.error(`WARNING: ${wrongSize.length} Weft transfers were short`);
  const retransmits = weftEvents.reduce((n, e) => n + e.retransmits, 0);
  const byPath = (p: DataPath) => weftEvents.filter((e) => e.file === FILE && e.dataPath === p).length;

  const fmt = (xs: number[] | undefined) => {
    if (xs === undefined || xs.length === 0) return "—";
    return `${(median(xs) as number).toFixed(1)} (${Math.max(...xs).toFixed(1)})`;
  };
  const header = ["setting", ...servers.map((s) => s.name), "Weft / best C"];
  const rows: string[][] = [];
  for (const setting of settings) {
    const row = [setting.name];
    for (const server of servers)
      row.push(server.skipped ? "skipped" : fmt(results.get(`${server.name}|${setting.name}`)));
    const weftRuns = results.get(`weft|${setting.name}`) ?? [];
    const others = servers
      .filter((s) => !s.name.startsWith("weft"))
      .map((s) => results.get(`${s.name}|${setting.name}`) ?? [])
      .filter((xs) => xs.length > 0);
    const weftMedian = median(weftRuns);
    if (weftMedian === undefined || others.length === 0) row.push("—");
    else {
      const bestMedian = Math.max(...others.map((xs) => median(xs) as number));
      const bestBest = Math.max(...others.map((xs) => Math.max(...xs)));
      row.push(
        `${(weftMedian / bestMedian).toFixed(2)}× (${(Math.max(...weftRuns) / bestBest).toFixed(2)}×)`,
      );
    }
    rows.push(row);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  console.log(`TFTP on loopback, ${sizeMiB} MiB file, client atftp; MiB/s median (best) of ${reps} runs`);
  console.log(line(header));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of rows) console.log(line(row));
  for (const s of servers) if (s.skipped) console.log(`${s.name} skipped: ${s.skipped}`);
  console.log("");
  console.log(
    `Server CPU time per transfer, ms, median (tftpd-hpa: its per-transfer child, sampled every 5 ms):`,
  );
  const cpuHeader = ["setting", ...servers.map((s) => s.name)];
  const cpuRows = settings.map((setting) => [
    setting.name,
    ...servers.map((s) => {
      const m = median(cpu.get(`${s.name}|${setting.name}`) ?? []);
      return m === undefined ? "—" : m.toFixed(0);
    }),
  ]);
  const cpuWidths = cpuHeader.map((h, i) => Math.max(h.length, ...cpuRows.map((r) => (r[i] ?? "").length)));
  const cpuLine = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(cpuWidths[i] as number)).join(" | ")} |`;
  console.log(cpuLine(cpuHeader));
  console.log(`|${cpuWidths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const row of cpuRows) console.log(cpuLine(row));
  console.log(`Weft retransmissions during the bench: ${retransmits}`);
  console.log(`Weft transfers by data path: native ${byPath("native")}, dgram ${byPath("dgram")}`);
  console.log(
    `load average at start ${load0.toFixed(2)}, at end ${(loadavg()[0] ?? 0).toFixed(2)} (2 cores)`,
  );
}

/** Outside the namespace: fetch tftpd-hpa (needs the network), make the namespace, re-run inside. */
async function inNamespace(): Promise<number> {
  try {
    await tftpdHpa();
  } catch (err) {
    console.error(`tftpd-hpa unavailable, the bench runs without it: ${(err as Error).message}`);
  }
  const ns = await Netns.create("weft-tftpb");
  const stop = () => void ns.destroy().finally(() => process.exit(130));
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    const [a, b] = [uniqueName("weftta"), uniqueName("wefttb")];
    await ns.ip("link", "add", a, "type", "veth", "peer", "name", b);
    await ns.ip("addr", "add", "192.0.2.1/24", "dev", a);
    await ns.ip("link", "set", a, "up");
    await ns.ip("link", "set", b, "up");
    const args = [...process.execArgv, process.argv[1] as string, "--in-netns"];
    args.push("--size", String(sizeMiB), "--reps", String(reps), ...(verbose ? ["--verbose"] : []));
    const child = ns.spawn(process.execPath, args, { stdio: "inherit" });
    return await new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 1)));
  } finally {
    await ns.destroy();
  }
}

if (flags["serve-weft"] !== undefined) {
  const dataPath = flags["data-path"];
  if (dataPath !== "native" && dataPath !== "dgram") throw new Error("--data-path is native or dgram");
  await serveWeft(flags["serve-weft"], dataPath);
} else if (flags["in-netns"]) await main();
else process.exitCode = await inNamespace();
