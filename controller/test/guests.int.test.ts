// Guests against a real libvirtd on this machine. The test starts its own virtlogd and
// libvirtd inside a network namespace it creates (entered with nsenter, so the cgroups that
// <cputune> needs stay visible) and a private mount namespace (its own /etc/libvirt, /run,
// /var/lib/libvirt...), then drives the guest service with the local host driver: two guests
// on one base image, caps in the live XML and in the cgroup, delete, base protection, VIP
// rules in nftables, the cleanup pass. Everything it started is ended by PID in afterAll.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import crypto from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { detectKvm } from "../src/guests/accel.js";
import { HostCa } from "../src/guests/ca.js";
import { renderDomainXml } from "../src/guests/domain-xml.js";
import { createExec } from "../src/guests/exec.js";
import { RemoteHostDriver } from "../src/guests/remote-driver.js";
import { DEFAULT_GUEST_NETWORK, LocalHostDriver, type ImageSource } from "../src/guests/host-driver.js";
import { Ipam } from "../src/guests/ipam.js";
import { GuestService } from "../src/guests/service.js";
import { createLogger } from "../src/log.js";
import { Store } from "../src/store/store.js";
import { addHost, tempStore, type TempStore } from "./guests-helpers.js";

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
const tryRun = (cmd: string, args: string[]) => {
  try {
    return sh(cmd, args);
  } catch {
    return "";
  }
};

const id = crypto.randomBytes(3).toString("hex");
const netns = `weft-guests-${id}`;
const dir = `/tmp/weft-gi-${id}`;
const lv = {
  etc: `${dir}/lv/etc`,
  run: `${dir}/lv/run`,
  lib: `${dir}/lv/lib`,
  cache: `${dir}/lv/cache`,
  log: `${dir}/lv/log`,
  sock: `${dir}/lv/sock`,
};
const uri = `qemu:///system?socket=${lv.sock}/libvirt-sock`;
const pids: number[] = [];
const logLines: string[] = [];
const log = createLogger("debug", { write: (l: string) => void logLines.push(l) });
const ca = new HostCa(`${dir}/pki`, createExec(log), { bits: 2048 });

let t: TempStore;
let driver: LocalHostDriver;
let service: GuestService;
const hostMhz = 2400;
const kvm = detectKvm();

function virsh(...args: string[]): string {
  return sh("virsh", ["-c", uri, "-q", ...args]);
}

function readPid(file: string): number | undefined {
  const n = Number(tryRun("cat", [file]).trim());
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

async function startLibvirt(): Promise<void> {
  for (const d of [...Object.values(lv), `${lv.lib}/dnsmasq`, `${lv.lib}/network`])
    fs.mkdirSync(d, { recursive: true });
  // TLS as a host would have it: certificates from the controller's CA, no plain TCP, and
  // only the controller's client certificate let in.
  await ca.ensureClient();
  const server = await ca.issueServer({ name: "localhost", addresses: ["127.0.0.1"] });
  fs.writeFileSync(
    `${lv.etc}/libvirtd.conf`,
    [
      `unix_sock_dir = "${lv.sock}"`,
      `unix_sock_rw_perms = "0700"`,
      `log_outputs = "3:file:${dir}/libvirtd.log"`,
      `listen_tls = 1`,
      `listen_tcp = 0`,
      `key_file = "${server.keyFile}"`,
      `cert_file = "${server.certFile}"`,
      `ca_file = "${ca.caCertFile}"`,
      `tls_allowed_dn_list = ["O=Weft,CN=weft-controller"]`,
      "",
    ].join("\n"),
  );
  fs.writeFileSync(`${lv.etc}/virtlogd.conf`, `log_outputs = "3:file:${dir}/virtlogd.log"\n`);
  fs.writeFileSync(`${lv.etc}/qemu.conf`, 'user = "root"\ngroup = "root"\n');
  const script = [
    "set -e",
    'mount --bind "$1/etc" /etc/libvirt',
    'mount --bind "$1/run" /run',
    'mount --bind "$1/lib" /var/lib/libvirt',
    'mount --bind "$1/cache" /var/cache/libvirt',
    'mount --bind "$1/log" /var/log/libvirt',
    'virtlogd -d -p "$2/virtlogd.pid"',
    'libvirtd -d -l -p "$2/libvirtd.pid"',
  ].join("\n");
  sh("nsenter", [
    `--net=/run/netns/${netns}`,
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    script,
    "weft-guests-libvirt",
    `${dir}/lv`,
    dir,
  ]);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = readPid(`${dir}/virtlogd.pid`);
    const l = readPid(`${dir}/libvirtd.pid`);
    if (v && !pids.includes(v)) pids.push(v);
    if (l && !pids.includes(l)) pids.push(l);
    if (l && tryRun("virsh", ["-c", uri, "version"])) return;
    if (Date.now() > deadline)
      throw new Error(`libvirtd did not answer: ${tryRun("tail", [`${dir}/libvirtd.log`])}`);
    await sleep(200);
  }
}

/** The controller's image, served from a file (the HTTP source is unit-tested). */
const baseFile = `${dir}/controller-images/guest-base.qcow2`;
const files: ImageSource = { open: async () => fs.createReadStream(baseFile) };

async function waitFor(name: string, state: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const g = await service.getGuest(name).catch(() => undefined);
    if (g?.state === state) return g;
    if (g?.state === "failed") throw new Error(`${name} failed: ${g.lastError}`);
    if (Date.now() > deadline)
      throw new Error(`${name} is ${g?.state ?? "absent"}, not ${state}: ${g?.lastError}`);
    await sleep(20);
  }
}

beforeAll(async () => {
  fs.mkdirSync(`${dir}/controller-images`, { recursive: true });
  sh("ip", ["netns", "add", netns]);
  sh("ip", ["-n", netns, "link", "set", "lo", "up"]);
  await startLibvirt();

  sh("qemu-img", ["create", "-q", "-f", "qcow2", baseFile, "32M"]);
  const sha256 = crypto.createHash("sha256").update(fs.readFileSync(baseFile)).digest("hex");

  t = tempStore();
  await t.db.image.create({
    data: {
      name: "guest-base",
      kind: "guest-base",
      format: "qcow2",
      size: BigInt(fs.statSync(baseFile).size),
      sha256,
      path: "guest-base.qcow2",
    },
  });
  await addHost(t.db, "host1", { cpus: 4, cpuMhz: hostMhz, memoryMiB: 8192, kvm: kvm.kvm, libvirtUri: uri });
  driver = new LocalHostDriver({
    stateDir: `${dir}/host`,
    libvirtUri: uri,
    network: DEFAULT_GUEST_NETWORK,
    images: files,
    exec: createExec(log),
    log,
    netns,
  });
  service = new GuestService({
    db: t.db,
    store: new Store(t.db),
    log,
    ipam: new Ipam(t.db),
    driverFor: () => driver,
  });
});

afterAll(async () => {
  await service?.settled().catch(() => undefined);
  await driver?.close().catch(() => undefined);
  // Domains first: QEMU outlives a killed libvirtd.
  for (const name of tryRun("virsh", ["-c", uri, "-q", "list", "--all", "--name"])
    .split("\n")
    .filter(Boolean)) {
    tryRun("virsh", ["-c", uri, "destroy", name]);
    tryRun("virsh", ["-c", uri, "undefine", name]);
  }
  tryRun("virsh", ["-c", uri, "net-destroy", DEFAULT_GUEST_NETWORK.name]);
  for (const pid of pids.reverse()) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      continue;
    }
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await sleep(100);
    }
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  tryRun("ip", ["netns", "del", netns]);
  await t?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

const spec = {
  image: "guest-base",
  vcpus: 1,
  cpu: "1.6GHz",
  memory: "256MiB",
  disk: "2GiB",
  net: "100Mbit",
  diskIops: 500,
  ports: [{ port: 80, protocol: "tcp" as const }],
};
const quota = Math.floor((100_000 * 1600) / hostMhz);

describe("guests on a real libvirtd", () => {
  it("creates a role of two guests on overlays of one cached base", async () => {
    const t0 = Date.now();
    const r = await service.createRole({ name: "web", instances: 2, spec }, "operator:test");
    expect(r.role.vip).toBe("10.79.0.1");
    expect(r.guests.map((g) => [g.name, g.state, g.dip])).toEqual([
      ["web-1", "pending", "10.78.0.2"],
      ["web-2", "pending", "10.78.0.3"],
    ]);
    await waitFor("web-1", "running");
    await waitFor("web-2", "running");
    console.log(
      `[guests] first create (base download included), request to both running: ${Date.now() - t0} ms`,
    );

    const images = fs.readdirSync(`${dir}/host/images`);
    expect(images).toHaveLength(1); // downloaded once
    for (const name of ["web-1", "web-2"]) {
      const overlay = `${dir}/host/overlays/${name}.qcow2`;
      const info = JSON.parse(
        sh("qemu-img", ["info", "-U", "-f", "qcow2", "--output=json", overlay]),
      ) as Record<string, unknown>;
      expect(info["backing-filename"]).toBe(`${dir}/host/images/${images[0]}`);
      expect(info["virtual-size"]).toBe(2 * 2 ** 30);
      expect(fs.statSync(overlay).blocks * 512).toBeLessThan(2 * 2 ** 20); // not a copy of the base
    }
  });

  it("shows the caps in the live XML, schedinfo and the cgroup", async () => {
    expect(virsh("domstate", "weft-web-1").trim()).toBe("running");
    const xml = virsh("dumpxml", "weft-web-1");
    expect(xml).toMatch(new RegExp(`<domain type='${kvm.kvm ? "kvm" : "qemu"}'`));
    expect(xml).toContain(`<quota>${quota}</quota>`);
    expect(xml).toContain("<period>100000</period>");
    expect(xml).toMatch(/<hard_limit unit='KiB'>\d+<\/hard_limit>/);
    expect(xml).toContain("<total_iops_sec>500</total_iops_sec>");
    expect(xml).toMatch(/<source file='[^']*config\/web-1\.iso'/);
    const caps = await driver.capabilities();
    if (caps.bandwidth) expect(xml).toContain("<inbound average='12500'");
    else {
      expect(xml).not.toContain("<bandwidth>");
      console.log(`[guests] bandwidth not enforceable here, omitted: ${caps.bandwidthReason}`);
      expect(logLines.some((l) => l.includes("bandwidth caps omitted"))).toBe(true);
    }
    expect(virsh("schedinfo", "weft-web-1")).toMatch(new RegExp(`vcpu_quota\\s*:\\s*${quota}`));

    const pid = Number(fs.readFileSync(`${lv.run}/libvirt/qemu/weft-web-1.pid`, "utf8").trim());
    const cg = fs.readFileSync(`/proc/${pid}/cgroup`, "utf8");
    // QEMU's main thread sits in the domain's emulator/ group; vcpu0/ is beside it.
    const v1 = /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(.*?)(?:\/emulator)?$/m.exec(cg)?.[1];
    if (v1 !== undefined) {
      const vcpu0 = `/sys/fs/cgroup/cpu${v1}/vcpu0/cpu.cfs_quota_us`;
      expect(fs.readFileSync(vcpu0, "utf8").trim()).toBe(String(quota));
    } else {
      const v2 = /^0::(.*?)(?:\/emulator)?$/m.exec(cg)?.[1] ?? "";
      expect(fs.readFileSync(`/sys/fs/cgroup${v2}/vcpu0/cpu.max`, "utf8").trim()).toBe(`${quota} 100000`);
    }
  });

  it("balances the VIP across the role's DIPs in nftables", async () => {
    await service.settled(); // a guest is running before its host's VIP table is applied
    const table = sh("ip", ["netns", "exec", netns, "nft", "list", "table", "ip", "weft"]);
    expect(table).toMatch(
      /ip daddr 10\.79\.0\.1 tcp dport 80 dnat to numgen inc mod 2 map \{ 0 : 10\.78\.0\.2, 1 : 10\.78\.0\.3 \}/,
    );
    expect(table).toMatch(/ip saddr 10\.78\.0\.0\/16 ip daddr != 10\.78\.0\.0\/16 masquerade/);
  });

  it("deletes one guest: domain and overlay gone, base kept, VIP map updated", async () => {
    await service.deleteGuest("web-2", "operator:test");
    expect(tryRun("virsh", ["-c", uri, "domstate", "weft-web-2"])).toBe("");
    expect(fs.existsSync(`${dir}/host/overlays/web-2.qcow2`)).toBe(false);
    expect(fs.readdirSync(`${dir}/host/images`)).toHaveLength(1);
    const table = sh("ip", ["netns", "exec", netns, "nft", "list", "table", "ip", "weft"]);
    expect(table).toContain("ip daddr 10.79.0.1 tcp dport 80 dnat to 10.78.0.2");
    expect(table).not.toContain("10.78.0.3");
  });

  it("refuses to remove the base while a guest uses it", async () => {
    const img = await t.db.image.findUniqueOrThrow({ where: { name: "guest-base" } });
    await expect(
      driver.removeBase({ name: img.name, sha256: img.sha256, size: Number(img.size) }),
    ).rejects.toMatchObject({ code: "IMAGE_IN_USE" });
  });

  it("creates a guest from the cached base quickly (request to domain running)", async () => {
    const t0 = Date.now();
    await service.scaleRole("web", 2, "operator:test");
    const g = await waitFor("web-2", "running");
    const wall = Date.now() - t0;
    const ev = await t.db.event.findFirst({
      where: { subjectType: "guest", toState: "running" },
      orderBy: { id: "desc" },
    });
    const data = ev?.data as { createMs: number; steps: Record<string, number> };
    console.log(
      `[guests] create with the base cached: ${wall} ms request→running (service ${data.createMs} ms, steps ${JSON.stringify(data.steps)})`,
    );
    const memtune = logLines.filter((l) => l.includes('"memtune"')).at(-1);
    if (memtune)
      console.log(`[guests] of which virsh memtune --live: ${(JSON.parse(memtune) as { ms: number }).ms} ms`);
    expect(g.dip).toBe("10.78.0.3"); // the freed DIP is reused
    expect(wall).toBeLessThan(10_000);
  });

  it("cleans up leftovers of a host that failed mid-create", async () => {
    // A guest whose create failed while its host was away: the files stayed behind.
    fs.copyFileSync(`${dir}/host/overlays/web-1.qcow2`, `${dir}/host/overlays/ghost-1.qcow2`);
    const r = await service.reconcile();
    expect(r.errors).toEqual([]);
    expect(r.removed).toEqual(["host1/ghost-1"]);
    expect(fs.existsSync(`${dir}/host/overlays/ghost-1.qcow2`)).toBe(false);
    expect(virsh("domstate", "weft-web-1").trim()).toBe("running");
  });

  it("deletes a role while its instances start, leaving nothing behind", async () => {
    await service.scaleRole("web", 4, "operator:test");
    await service.deleteRole("web", "operator:test");
    await service.settled();
    expect(await t.db.guest.count()).toBe(0);
    expect(await t.db.role.count()).toBe(0);
    expect(fs.readdirSync(`${dir}/host/overlays`)).toEqual([]);
    expect(virsh("list", "--all", "--name").trim()).toBe("");
    const table = sh("ip", ["netns", "exec", netns, "nft", "list", "table", "ip", "weft"]);
    expect(table).not.toContain("dnat");
    const img = await t.db.image.findUniqueOrThrow({ where: { name: "guest-base" } });
    await driver.removeBase({ name: img.name, sha256: img.sha256, size: Number(img.size) });
    expect(fs.readdirSync(`${dir}/host/images`)).toEqual([]);
  });
});

describe("a host reached through libvirt alone (TLS, storage pools)", () => {
  const tlsUri = (pki: string) => `qemu+tls://127.0.0.1/system?pkipath=${encodeURIComponent(pki)}`;
  const inNs = (args: string[]) => {
    try {
      return { ok: true, out: sh("nsenter", [`--net=/run/netns/${netns}`, ...args]) };
    } catch (err) {
      return { ok: false, out: String((err as { stderr?: unknown }).stderr ?? err) };
    }
  };

  it("lets the controller's client certificate in over TLS, and no other", async () => {
    const ok = inNs(["virsh", "-c", tlsUri(ca.clientDir), "-q", "uri"]);
    if (!ok.ok) console.log(tryRun("tail", ["-n", "20", `${dir}/libvirtd.log`]));
    expect(ok.out).toContain("qemu+tls://127.0.0.1/system");
    expect(ok.ok).toBe(true);
    // A client certificate from another CA; the client trusts both CAs, so it is the server
    // that refuses it.
    const rogue = new HostCa(`${dir}/rogue-pki`, createExec(log), { bits: 2048 });
    await rogue.ensureClient();
    fs.writeFileSync(
      `${rogue.clientDir}/cacert.pem`,
      fs.readFileSync(ca.caCertFile, "utf8") + fs.readFileSync(rogue.caCertFile, "utf8"),
    );
    const bad = inNs(["virsh", "-c", tlsUri(rogue.clientDir), "-q", "uri"]);
    expect(bad.ok).toBe(false);
    expect(bad.out).not.toMatch(/Our own certificate/);
    // And nothing listens on plain TCP.
    expect(inNs(["virsh", "-c", "qemu+tcp://127.0.0.1/system", "-q", "uri"]).ok).toBe(false);
  });

  it("uploads a base once, makes overlays and config drives as volumes, runs a domain", async () => {
    const img = await t.db.image.findUniqueOrThrow({ where: { name: "guest-base" } });
    const ref = { name: img.name, sha256: img.sha256, size: Number(img.size) };
    const caps = await driver.capabilities();
    await driver.networkEnsure(); // on a real host, the agent's job
    const remote = new RemoteHostDriver({
      libvirtUri: uri,
      remoteDir: `${dir}/remote`,
      network: DEFAULT_GUEST_NETWORK.name,
      guestSubnet: DEFAULT_GUEST_NETWORK.subnet,
      imageFile: () => baseFile,
      exec: createExec(log),
      log,
      capabilities: caps,
    });
    try {
      const uploadsBefore = logLines.filter((l) => l.includes('"vol-upload"')).length;
      const [a, b] = await Promise.all([remote.ensureBaseImage(ref), remote.ensureBaseImage(ref)]);
      expect(a).toBe(`${dir}/remote/images/${img.sha256}.qcow2`);
      expect(b).toBe(a);
      expect(logLines.filter((l) => l.includes('"vol-upload"')).length - uploadsBefore).toBe(1);

      const t0 = Date.now(); // a create with the base cached, as the guest service does it
      const overlay = await remote.createOverlay("rg-1", ref, 2 * 2 ** 30);
      expect(overlay).toBe(`${dir}/remote/guests/rg-1.qcow2`);
      const info = JSON.parse(
        sh("qemu-img", ["info", "-U", "-f", "qcow2", "--output=json", overlay]),
      ) as Record<string, unknown>;
      expect(info["backing-filename"]).toBe(a);
      await remote.writeConfigDrive({
        name: "rg-1",
        dip: "10.78.0.200",
        prefix: 16,
        gateway: "10.78.0.1",
        role: null,
        vip: null,
      });
      expect(fs.existsSync(`${dir}/remote/guests/rg-1.iso`)).toBe(true);

      const xml = renderDomainXml(
        {
          name: "weft-rg-1",
          uuid: crypto.randomUUID(),
          vcpus: 1,
          cpuMhz: 1600,
          memoryMiB: 128,
          diskIops: null,
          diskBps: null,
          netInKBps: 1000,
          netOutKBps: 1000,
          mac: "52:54:00:00:00:c8",
        },
        {
          kvm: kvm.kvm,
          cpuMhz: hostMhz,
          bandwidth: caps.bandwidth,
          hardLimitInXml: caps.memlock,
          network: remote.network,
        },
        remote.paths("rg-1"),
      );
      await remote.defineAndStart("rg-1", xml, caps.memlock ? {} : { liveHardLimitKiB: 512 * 1024 });
      console.log(
        `[guests] remote driver, base cached: overlay, config drive and domain running in ${Date.now() - t0} ms`,
      );
      expect(await remote.domainState("rg-1")).toBe("running");
      expect((await remote.inventory()).overlays).toEqual(["rg-1"]);
      await expect(remote.removeBase(ref)).rejects.toMatchObject({ code: "IMAGE_IN_USE" });
      await expect(
        remote.setVips([{ vip: "10.79.0.9", ports: [{ port: 80, protocol: "tcp" }], dips: [] }]),
      ).rejects.toMatchObject({
        code: "VIP_RULES_UNSUPPORTED",
      });

      await remote.destroy("rg-1");
      expect(await remote.domainState("rg-1")).toBe("absent");
      expect(fs.readdirSync(`${dir}/remote/guests`)).toEqual([]);
      await remote.removeBase(ref);
      expect(fs.readdirSync(`${dir}/remote/images`)).toEqual([]);
    } finally {
      await remote.close();
    }
  });

  it("refuses a hostile base that names a host file as its backing file", async () => {
    const evil = `${dir}/controller-images/evil.qcow2`;
    sh("qemu-img", ["create", "-q", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", evil, "64M"]);
    const sha256 = crypto.createHash("sha256").update(fs.readFileSync(evil)).digest("hex");
    const ref = { name: "evil", sha256, size: fs.statSync(evil).size };
    const remote = new RemoteHostDriver({
      libvirtUri: uri,
      remoteDir: `${dir}/remote`,
      network: DEFAULT_GUEST_NETWORK.name,
      guestSubnet: DEFAULT_GUEST_NETWORK.subnet,
      imageFile: () => evil,
      exec: createExec(log),
      log,
      capabilities: await driver.capabilities(),
    });
    const local = new LocalHostDriver({
      stateDir: `${dir}/host-evil`,
      libvirtUri: uri,
      network: DEFAULT_GUEST_NETWORK,
      images: { open: async () => fs.createReadStream(evil) },
      exec: createExec(log),
      log,
      netns,
    });
    try {
      await expect(remote.ensureBaseImage(ref)).rejects.toMatchObject({ code: "IMAGE_BACKING_FILE" });
      await expect(local.ensureBaseImage(ref)).rejects.toMatchObject({ code: "IMAGE_BACKING_FILE" });
      expect(fs.readdirSync(`${dir}/host-evil/images`)).toEqual([]);
    } finally {
      await remote.close();
      await local.close();
    }
  });
});
