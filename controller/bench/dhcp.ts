// DHCP exchanges per second (DISCOVER, OFFER, REQUEST, ACK with distinct MACs) for Weft with
// leases persisted to SQLite, dnsmasq with its lease file, and Kea with memfile leases, under
// the same load, in network namespaces this script creates and removes.
//
//   npx tsx controller/bench/dhcp.ts [--count 5000] [--concurrency 64] [--seconds 60]
//                                    [--servers weft,dnsmasq,kea,weft-memory] [--weft-log info]
//
// The load generator (controller/test/dhcp-int-client.ts "load") runs in a client namespace on
// a veth pair into the server namespace's bridge; every server gets a fresh lease database and
// a warm-up run with other MACs first.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { Netns, uniqueName } from "../test/helpers/netns.js";
import { repoRoot } from "../test/helpers/controller.js";

const argv = process.argv.slice(2);
const flag = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : dflt;
};
const count = Number(flag("count", "5000"));
const concurrency = Number(flag("concurrency", "64"));
const seconds = Number(flag("seconds", "60"));
const servers = flag("servers", "weft,dnsmasq,kea").split(",");
const weftLog = flag("weft-log", "info");

const SERVER_IP = "10.88.0.1";
const CIDR = "10.88.0.0/16";
const RANGE = { start: "10.88.1.0", end: "10.88.250.255" };

interface Result {
  ok: number;
  failed: number;
  seconds: number;
  rate: number;
  p50ms: number;
  p99ms: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "weft-dhcp-bench-"));
  const srv = await Netns.create("weft-dhcpb");
  const cli = await Netns.create("weft-dhcpbc").catch(async (e: unknown) => {
    await srv.destroy();
    throw e;
  });
  // Ctrl-C still removes the namespaces (and ends the servers started in them).
  const onSignal = () => {
    void Promise.all([cli.destroy(), srv.destroy()]).finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const results = new Map<string, Result>();
  try {
    const bridge = uniqueName("weftbr-");
    await srv.addBridge(bridge, `${SERVER_IP}/16`);
    await srv.ip("route", "add", "255.255.255.255/32", "dev", bridge);
    await srv.addVeth(bridge, { peerNs: cli, peerCidr: "10.88.0.2/16", peer: "weftload0" });
    await cli.ip("route", "add", "255.255.255.255/32", "dev", "weftload0");

    const load = async (n: number, base: number): Promise<Result> => {
      const r = await cli.exec(
        process.execPath,
        [
          "--import",
          "tsx",
          path.join(repoRoot, "controller/test/dhcp-int-client.ts"),
          "load",
          JSON.stringify({ count: n, concurrency, seconds, base }),
        ],
        { timeoutMs: (seconds + 60) * 1000 },
      );
      if (r.code !== 0) throw new Error(`load generator failed: ${r.stderr}`);
      return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as Result;
    };

    for (const name of servers) {
      const dir = fs.mkdtempSync(path.join(work, `${name}-`));
      let proc: ChildProcess;
      if (name === "weft" || name === "weft-memory") {
        // weft-memory: the same server with the in-memory lease store, to show what persistence costs.
        const cfg = {
          mode: "full",
          serverAddress: SERVER_IP,
          ...(name === "weft" ? { db: `file:${path.join(dir, "weft.db")}` } : {}),
          subnets: [{ cidr: CIDR, range: RANGE, routers: [SERVER_IP], leaseSeconds: 3600 }],
          logLevel: weftLog,
        };
        proc = srv.spawn(
          process.execPath,
          ["--import", "tsx", "controller/test/dhcp-int-server.ts", JSON.stringify(cfg)],
          {
            cwd: repoRoot,
            stdio: ["ignore", "pipe", fs.openSync(path.join(dir, "server.log"), "w")],
          },
        );
        await new Promise<void>((resolve, reject) => {
          readline
            .createInterface({ input: proc.stdout! })
            .on("line", (l) => l.includes('"ready"') && resolve());
          proc.once("exit", (c) => reject(new Error(`weft exited ${c}`)));
        });
      } else if (name === "dnsmasq") {
        proc = srv.spawn(
          "dnsmasq",
          [
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            `--interface=${bridge}`,
            "--bind-interfaces",
            "--user=root",
            `--dhcp-range=${RANGE.start},${RANGE.end},255.255.0.0,1h`,
            `--dhcp-option=option:router,${SERVER_IP}`,
            `--dhcp-leasefile=${path.join(dir, "leases")}`,
            "--dhcp-lease-max=100000",
            "--dhcp-authoritative",
            // Weft does not ping before offering (it costs 3 s per boot): neither does dnsmasq here.
            "--no-ping",
            `--pid-file=${path.join(dir, "dnsmasq.pid")}`,
          ],
          { stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "server.log"), "w")] },
        );
        await sleep(1000);
      } else if (name === "kea") {
        const conf = {
          Dhcp4: {
            "interfaces-config": { interfaces: [bridge], "dhcp-socket-type": "raw" },
            "lease-database": {
              type: "memfile",
              persist: true,
              name: path.join(dir, "kea-leases4.csv"),
              "lfc-interval": 0,
            },
            "valid-lifetime": 3600,
            subnet4: [
              {
                id: 1,
                subnet: CIDR,
                pools: [{ pool: `${RANGE.start} - ${RANGE.end}` }],
                "option-data": [{ name: "routers", data: SERVER_IP }],
              },
            ],
            loggers: [
              {
                name: "kea-dhcp4",
                output_options: [{ output: path.join(dir, "kea.log") }],
                severity: "INFO",
              },
            ],
          },
        };
        fs.writeFileSync(path.join(dir, "kea.json"), JSON.stringify(conf));
        proc = srv.spawn("kea-dhcp4", ["-c", path.join(dir, "kea.json")], {
          env: { ...process.env, KEA_PIDFILE_DIR: dir, KEA_LOCKFILE_DIR: dir },
          stdio: ["ignore", "ignore", fs.openSync(path.join(dir, "server.log"), "w")],
        });
        await sleep(2000);
      } else {
        throw new Error(`unknown server ${name}`);
      }
      try {
        if (proc.exitCode !== null) throw new Error(`${name} exited ${proc.exitCode}: see ${dir}/server.log`);
        const warm = await load(Math.min(200, count), 0x100000);
        if (warm.ok === 0) throw new Error(`${name} answered nothing in the warm-up; see ${dir}`);
        const r = await load(count, 0x200000);
        results.set(name, r);
        console.error(`${name}: ${JSON.stringify(r)}`);
      } catch (e) {
        console.error(`${name}: ${(e as Error).message}`);
      } finally {
        await Netns.stop(proc);
      }
    }
  } finally {
    await cli.destroy();
    await srv.destroy();
    fs.rmSync(work, { recursive: true, force: true });
  }

  console.log(
    `\nDHCP exchanges (DISCOVER/OFFER/REQUEST/ACK), ${count} clients, ${concurrency} in flight, ${os.cpus().length} cores`,
  );
  console.log("server    ok      failed  seconds  exchanges/s  p50 ms  p99 ms");
  for (const [name, r] of results) {
    console.log(
      `${name.padEnd(9)} ${String(r.ok).padEnd(7)} ${String(r.failed).padEnd(7)} ${r.seconds.toFixed(2).padEnd(8)} ${r.rate
        .toFixed(0)
        .padEnd(12)} ${r.p50ms.toFixed(1).padEnd(7)} ${r.p99ms.toFixed(1)}`,
    );
  }
  const weft = results.get("weft");
  for (const other of ["dnsmasq", "kea", "weft-memory"]) {
    const o = results.get(other);
    if (weft && o) console.log(`weft / ${other}: ${(weft.rate / o.rate).toFixed(2)}`);
  }
}

await main();
