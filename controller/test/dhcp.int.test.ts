// The DHCP server against real clients (busybox udhcpc, ISC dhclient) and the test client, in
// network namespaces this file creates and removes: the server on a bridge in one namespace,
// the clients on veth pairs in another. Leases are persisted in a temp SQLite file.
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb, type Db } from "../src/store/db.js";
import { Netns, uniqueName, type VethPair } from "./helpers/netns.js";
import { repoRoot } from "./helpers/controller.js";

const SERVER_IP = "10.77.0.1";
let srv: Netns | undefined;
let cli: Netns | undefined;
let server: ChildProcess | undefined;
let serverLog = "";
let dir = "";
let dbUrl = "";
let db: Db | undefined;
let udhcpcIf: VethPair;
let dhclientIf: VethPair;

const serverConfig = (mode: "full" | "proxy") =>
  JSON.stringify({
    mode,
    serverAddress: SERVER_IP,
    db: dbUrl,
    subnets: [
      {
        cidr: "10.77.0.0/24",
        range: { start: "10.77.0.100", end: "10.77.0.199" },
        routers: [SERVER_IP],
        dnsServers: [SERVER_IP],
        leaseSeconds: 600,
      },
    ],
  });

async function startServer(mode: "full" | "proxy" = "full"): Promise<void> {
  const p = srv!.spawn(
    process.execPath,
    ["--import", "tsx", "controller/test/dhcp-int-server.ts", serverConfig(mode)],
    {
      cwd: repoRoot,
    },
  );
  server = p;
  p.stderr?.on("data", (d: Buffer) => (serverLog += d.toString()));
  const lines = readline.createInterface({ input: p.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${serverLog}`)), 30_000);
    lines.on("line", (l) => {
      if (l.includes('"ready":true')) {
        clearTimeout(timer);
        resolve();
      }
    });
    p.once("exit", (code) => reject(new Error(`server exited ${code}: ${serverLog}`)));
  });
}

async function stopServer(): Promise<void> {
  if (server) await Netns.stop(server);
  server = undefined;
}

/** Run a client scenario (dhcp-int-client.ts) in the client namespace. */
async function scenario(name: string, args: object): Promise<Record<string, unknown>> {
  const r = await cli!.exec(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(repoRoot, "controller/test/dhcp-int-client.ts"),
      name,
      JSON.stringify(args),
    ],
    { timeoutMs: 30_000 },
  );
  if (r.code !== 0) throw new Error(`scenario ${name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "{}") as Record<string, unknown>;
}

/** Environment a client's hook script saw, by the event it was called for. */
function scriptEnv(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  return env;
}

async function udhcpc(extra: string[] = []): Promise<Record<string, string>> {
  const out = path.join(dir, "udhcpc");
  fs.rmSync(`${out}.bound`, { force: true });
  const r = await cli!.exec(
    "udhcpc",
    ["-i", udhcpcIf.peer, "-f", "-q", "-n", "-t", "8", "-T", "2", "-s", path.join(dir, "hook.sh"), ...extra],
    { timeoutMs: 30_000 },
  );
  if (!fs.existsSync(`${out}.bound`))
    throw new Error(`udhcpc got no lease: ${r.stderr}\n${serverLog.slice(-3000)}`);
  return scriptEnv(`${out}.bound`);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-dhcp-int-"));
  dbUrl = `file:${path.join(dir, "weft.db")}`;
  // Hook script for both clients: dump the environment per event into files named after the
  // client and the event ($1 for udhcpc, $reason for dhclient). udhcpc's address is configured
  // as its stock script would, so its RELEASE (sent from the leased address) can leave.
  fs.writeFileSync(
    path.join(dir, "hook.sh"),
    [
      "#!/bin/sh",
      // Written aside and renamed, so that a test that sees the file sees all of it.
      `if [ -n "$reason" ]; then env > ${dir}/.dhclient.$reason; mv ${dir}/.dhclient.$reason ${dir}/dhclient.$reason; exit 0; fi`,
      `env > ${dir}/.udhcpc.$1; mv ${dir}/.udhcpc.$1 ${dir}/udhcpc.$1`,
      'case "$1" in',
      '  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface" ;;',
      '  deconfig) ip addr flush dev "$interface" ;;',
      "esac",
      "exit 0",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  srv = await Netns.create("weft-dhcp");
  cli = await Netns.create("weft-dhcpc");
  const bridge = uniqueName("weftbr-");
  await srv.addBridge(bridge, `${SERVER_IP}/24`);
  // Node has no SO_BINDTODEVICE: broadcasts need a route to leave by the bridge.
  await srv.ip("route", "add", "255.255.255.255/32", "dev", bridge);
  udhcpcIf = await srv.addVeth(bridge, { peerNs: cli, peerMac: "02:77:00:00:00:01" });
  dhclientIf = await srv.addVeth(bridge, { peerNs: cli, peerMac: "02:77:00:00:00:02" });
  await srv.addVeth(bridge, { peerNs: cli, peerCidr: "10.77.0.250/24", peer: "weftload0" });
  await cli.ip("route", "add", "255.255.255.255/32", "dev", "weftload0");
  await startServer();
  db = openDb(dbUrl);
});

afterAll(async () => {
  // WEFT_DHCP_INT_LOG=<file> keeps the server's log for a look after a failure.
  if (process.env.WEFT_DHCP_INT_LOG) fs.writeFileSync(process.env.WEFT_DHCP_INT_LOG, serverLog);
  await db?.$disconnect();
  await stopServer().catch(() => undefined);
  await cli?.destroy();
  await srv?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("DHCP server with real clients", () => {
  let udhcpcIp = "";

  it("udhcpc (as a BIOS PXE client) gets a lease with TFTP server and boot file", async () => {
    const env = await udhcpc(["-V", "PXEClient:Arch:00000:UNDI:002001", "-O", "tftp", "-O", "bootfile"]);
    expect(env.ip).toMatch(/^10\.77\.0\.1\d\d$/);
    expect(env).toMatchObject({ serverid: SERVER_IP, siaddr: SERVER_IP, boot_file: "undionly.kpxe" });
    expect(env.tftp).toBe(SERVER_IP);
    expect(env.bootfile).toBe("undionly.kpxe");
    udhcpcIp = env.ip ?? "";
    const machine = await db!.nic.findUnique({
      where: { mac: "02:77:00:00:00:01" },
      include: { machine: true },
    });
    expect(machine?.machine.provisionState).toBe("discovered");
  });

  it("dhclient of a known machine gets another address and the boot options", async () => {
    await db!.machine.create({ data: { nics: { create: { mac: "02:77:00:00:00:02" } } } });
    fs.writeFileSync(
      path.join(dir, "dhclient.conf"),
      "request subnet-mask, routers, domain-name-servers, tftp-server-name, bootfile-name;\n",
    );
    const p = cli!.spawn("dhclient", [
      "-d",
      "-1",
      "-cf",
      path.join(dir, "dhclient.conf"),
      "-lf",
      path.join(dir, "dhclient.leases"),
      "-pf",
      path.join(dir, "dhclient.pid"),
      "-sf",
      path.join(dir, "hook.sh"),
      dhclientIf.peer,
    ]);
    let err = "";
    p.stderr?.on("data", (d: Buffer) => (err += d.toString()));
    const bound = path.join(dir, "dhclient.BOUND");
    for (let i = 0; i < 300 && !fs.existsSync(bound); i++) await new Promise((r) => setTimeout(r, 100));
    await Netns.stop(p);
    if (!fs.existsSync(bound)) throw new Error(`dhclient got no lease: ${err}`);
    const env = scriptEnv(bound);
    expect(env.new_ip_address).toMatch(/^10\.77\.0\.1\d\d$/);
    expect(env.new_ip_address).not.toBe(udhcpcIp);
    expect(env.new_filename).toBe("undionly.kpxe");
    expect(env.new_tftp_server_name).toBe(SERVER_IP);
    expect(env.new_bootfile_name).toBe("undionly.kpxe");
  });

  it("keeps the address across a server restart (Prisma store on SQLite)", async () => {
    await stopServer();
    await startServer();
    const env = await udhcpc(["-V", "PXEClient:Arch:00000:UNDI:002001"]);
    expect(env.ip).toBe(udhcpcIp);
  });

  it("NAKs a foreign address and one held by another client", async () => {
    expect(await scenario("request", { mac: "02:77:00:00:01:01", ip: "192.168.50.5" })).toMatchObject({
      type: "NAK",
    });
    expect(await scenario("request", { mac: "02:77:00:00:01:01", ip: udhcpcIp })).toMatchObject({
      type: "NAK",
    });
  });

  it("takes a DECLINEd address out of the pool", async () => {
    const r = await scenario("decline", { mac: "02:77:00:00:01:02" });
    expect(r.type2).toBe("ACK");
    expect(r.ip2).not.toBe(r.ip1);
    const row = await db!.lease.findUnique({ where: { ip: String(r.ip1) } });
    expect(row).toMatchObject({ state: "declined", mac: null });
  });

  it("records a RELEASE from the test client and from udhcpc", async () => {
    const r = await scenario("release", { mac: "02:77:00:00:01:03" });
    expect((await db!.lease.findUnique({ where: { ip: String(r.ip) } }))?.state).toBe("released");
    // udhcpc releases on SIGUSR2 once bound (with -q it quits before it counts as bound).
    const out = path.join(dir, "udhcpc.bound");
    fs.rmSync(out, { force: true });
    const p = cli!.spawn("udhcpc", [
      "-i",
      udhcpcIf.peer,
      "-f",
      "-n",
      "-t",
      "4",
      "-T",
      "1",
      "-s",
      path.join(dir, "hook.sh"),
    ]);
    for (let i = 0; i < 300 && !fs.existsSync(out); i++) await new Promise((res) => setTimeout(res, 100));
    expect(scriptEnv(out).ip).toBe(udhcpcIp);
    p.kill("SIGUSR2");
    // The RELEASE is on its way once udhcpc has the signal; wait for the server to record it
    // (seconds when the machine is busy), rather than for a fixed time.
    let state: string | undefined;
    for (let i = 0; i < 100 && state !== "released"; i++) {
      await new Promise((res) => setTimeout(res, 100));
      state = (await db!.lease.findUnique({ where: { ip: udhcpcIp } }))?.state;
    }
    await Netns.stop(p);
    expect(state).toBe("released");
  });

  it("serves 80 distinct clients at once without giving one address twice", async () => {
    const r = await scenario("load", { count: 80, concurrency: 20, base: 0x100 });
    expect(r).toMatchObject({ ok: 80, failed: 0 });
    const rows = await db!.lease.findMany({ where: { state: "bound" } });
    expect(new Set(rows.map((l) => l.mac)).size).toBe(rows.length);
  });

  it("in proxy mode, offers only boot options on port 67 and ACKs on port 4011", async () => {
    await stopServer();
    await startServer("proxy");
    const r = await scenario("proxy", { mac: "02:77:00:00:02:01", ciaddr: "10.77.0.250" });
    expect(r).toMatchObject({
      offer: "OFFER",
      offerYiaddr: "0.0.0.0",
      offerFile: "ipxe.efi",
      offerVendorClass: "PXEClient",
      ack: "ACK",
      ackFile: "ipxe.efi",
    });
  });
});
