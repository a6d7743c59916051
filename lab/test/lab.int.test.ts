// The lab against the real machine: namespace, bridge, the lab's own libvirtd, TCG or KVM
// servers that PXE-boot onto the bridge, power through the controller's libvirt driver, and
// a `down` that leaves nothing behind. Uses its own namespace, bridge and state directory,
// so it never touches a developer's lab. Needs root and the Debian packages of setup.sh.
import { mkdtempSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibvirtPowerDriver } from "../../controller/src/power/libvirt.js";
import { PowerError } from "../../controller/src/power/driver.js";
import { labPaths, libvirtUri, type LabConfig } from "../src/config.js";
import { realSystem } from "../src/exec.js";
import { down, up, type UpStep } from "../src/lab.js";
import { checkTools } from "../src/preflight.js";
import { findProcesses, isRunning, type ProcessRecord } from "../src/procs.js";
import { readState } from "../src/state.js";
import type { ServerRegistration } from "../src/register.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = path.join(ROOT, "lab/src/main.ts");
const NETNS = "weft-labtest";
const BRIDGE = "weftbrt0";

function canRun(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    checkTools();
    return true;
  } catch {
    return false;
  }
}

const stateDir = mkdtempSync(path.join(tmpdir(), "weft-labtest-"));
const config: LabConfig = { stateDir, netns: NETNS, bridge: BRIDGE };
const paths = labPaths(stateDir);

function lab(...args: string[]) {
  return execa(
    "node",
    ["--import", "tsx", MAIN, "--state-dir", stateDir, "--netns", NETNS, "--bridge", BRIDGE, ...args],
    {
      cwd: ROOT,
      reject: false,
      timeout: 240_000,
    },
  );
}

interface DhcpSeen {
  t: number;
  mac: string;
}

// Listens on UDP 67 inside the namespace and prints every DHCP request it receives: proof
// that the servers' requests reach the bridge, with the time they arrived. It answers nothing.
const SNIFFER = `
const s = require("node:dgram").createSocket({ type: "udp4", reuseAddr: true });
s.on("message", (b) => {
  if (b.length < 240 || b[0] !== 1) return;
  const mac = [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, "0")).join(":");
  process.stdout.write(JSON.stringify({ t: Date.now(), mac }) + "\\n");
});
s.bind(67, "0.0.0.0", () => process.stdout.write(JSON.stringify({ ready: true }) + "\\n"));
`;

function startListener() {
  return execa("ip", ["netns", "exec", NETNS, process.execPath, "-e", SNIFFER], {
    reject: false,
    buffer: false,
  });
}

class DhcpWatch {
  readonly seen: DhcpSeen[] = [];
  readonly proc: ReturnType<typeof startListener>;
  #ready: Promise<void>;

  constructor() {
    this.proc = startListener();
    let buf = "";
    this.#ready = new Promise((resolve) => {
      this.proc.stdout?.on("data", (chunk: Buffer) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const msg = JSON.parse(buf.slice(0, i)) as DhcpSeen | { ready: true };
          buf = buf.slice(i + 1);
          if ("ready" in msg) resolve();
          else this.seen.push(msg);
        }
      });
    });
  }

  ready(): Promise<void> {
    return Promise.race([
      this.#ready,
      sleep(10_000).then(() => Promise.reject(new Error("DHCP listener did not start"))),
    ]);
  }

  async first(mac: string, after: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.seen.find((s) => s.mac === mac && s.t >= after);
      if (hit !== undefined) return hit.t;
      if (Date.now() > deadline) throw new Error(`no DHCP request from ${mac} within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  stop(): void {
    if (this.proc.pid !== undefined) this.proc.kill("SIGTERM");
  }
}

async function powerCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "none";
  } catch (err) {
    if (err instanceof PowerError) return err.code;
    throw err;
  }
}

async function namespaces(): Promise<string[]> {
  const r = await execa("ip", ["netns", "list"]);
  return r.stdout.split("\n").map((l) => l.split(" ")[0] ?? "");
}

/** Everything that must be gone after `down`. */
async function expectNothingLeft(recorded: ProcessRecord[]): Promise<void> {
  expect(await namespaces()).not.toContain(NETNS);
  expect((await execa("ip", ["link", "show", "dev", BRIDGE], { reject: false })).exitCode).not.toBe(0);
  for (const rec of recorded) expect(isRunning(rec), `${rec.cmd} (pid ${rec.pid})`).toBe(false);
  const strays = findProcesses((argv) => argv.some((a) => a.includes(stateDir)));
  expect(strays.map((s) => `${s.cmd} ${s.pid}`)).toEqual([]);
  expect(existsSync(stateDir)).toBe(false);
}

describe.skipIf(!canRun())("the virtual lab", () => {
  const watch: { current?: DhcpWatch } = {};

  beforeAll(async () => {
    // A lab left by an earlier, interrupted run of this test.
    await down(realSystem, config, { purge: true }).catch(() => undefined);
  });

  afterAll(async () => {
    watch.current?.stop();
    await down(realSystem, config, { purge: true }).catch(() => undefined);
  });

  it(
    "builds a lab, PXE-boots its servers through the power driver, and removes every trace",
    { timeout: 600_000 },
    async () => {
      const t0 = Date.now();
      const first = await lab(
        "up",
        "--servers",
        "2",
        "--memory",
        "512",
        "--controller",
        "/nonexistent/controller/main.js",
      );
      expect(first.exitCode, first.stderr).toBe(0);
      expect(first.stdout).toContain(`lab ${NETNS} is up`);
      expect(first.stderr).toContain("controller is not built");
      const upSeconds = (Date.now() - t0) / 1000;

      const again = await lab(
        "up",
        "--servers",
        "2",
        "--memory",
        "512",
        "--controller",
        "/nonexistent/controller/main.js",
      );
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.stdout).toContain("is already up");

      const state = readState(paths.state);
      expect(state?.phase).toBe("up");
      // On this kind of machine /dev/kvm cannot run stock guests: detection must pick TCG there.
      const accel = JSON.parse(readFileSync(paths.accel, "utf8")) as { accel: string; reason: string };
      expect(["kvm", "tcg"]).toContain(accel.accel);
      expect(state?.accel).toBe(accel.accel);

      const regs = (JSON.parse(readFileSync(paths.servers, "utf8")) as { servers: ServerRegistration[] })
        .servers;
      expect(regs.map((r) => [r.name, r.macs[0], r.powerDriver])).toEqual([
        ["srv1", "52:54:00:77:00:01", "libvirt"],
        ["srv2", "52:54:00:77:00:02", "libvirt"],
      ]);
      const [srv1, srv2] = regs.map((r) => r.powerParams);
      if (srv1 === undefined || srv2 === undefined) throw new Error("two registrations expected");
      expect(srv1.uri).toBe(libvirtUri(stateDir));

      const driver = new LibvirtPowerDriver();
      expect(driver.validate(srv1).ok).toBe(true);
      expect(await driver.status(srv1)).toBe("off");

      const dhcp = new DhcpWatch();
      watch.current = dhcp;
      await dhcp.ready();

      // One server.
      const on1 = Date.now();
      await driver.on(srv1);
      const started1 = Date.now() - on1;
      expect(await driver.status(srv1)).toBe("on");
      const oneServer = (await dhcp.first("52:54:00:77:00:01", on1, 120_000)) - on1;
      await driver.off(srv1);
      expect(await driver.status(srv1)).toBe("off");
      await driver.off(srv1); // already off: not an error

      // Two servers at once.
      const on2 = Date.now();
      await Promise.all([driver.on(srv1), driver.on(srv2)]);
      const [a, b] = await Promise.all([
        dhcp.first("52:54:00:77:00:01", on2, 120_000),
        dhcp.first("52:54:00:77:00:02", on2, 120_000),
      ]);
      const twoServers = [a - on2, b - on2];

      // Firmware and iPXE on both serial logs.
      for (const name of ["srv1", "srv2"]) {
        const log = readFileSync(paths.console(name), "utf8");
        expect(log, name).toContain("SeaBIOS");
        expect(log, name).toMatch(/iPXE/);
        expect(log, name).toContain(`net0: ${name === "srv1" ? "52:54:00:77:00:01" : "52:54:00:77:00:02"}`);
      }
      const st = await lab("status", "-o", "json");
      expect(st.exitCode, st.stderr).toBe(0);
      const status = JSON.parse(st.stdout) as {
        servers: Array<{ name: string; power: string; mac: string; console: string[] }>;
      };
      expect(status.servers.map((s) => [s.name, s.power])).toEqual([
        ["srv1", "on"],
        ["srv2", "on"],
      ]);
      expect(status.servers.every((s) => s.console.length > 0)).toBe(true);
      expect((await lab("console", "srv9")).exitCode).toBe(2);

      await driver.cycle(srv2);
      expect(await driver.status(srv2)).toBe("on");
      await Promise.all([driver.off(srv1), driver.off(srv2)]);
      expect([await driver.status(srv1), await driver.status(srv2)]).toEqual(["off", "off"]);
      dhcp.stop();

      // A crash: libvirtd killed and the bridge gone. `up` repairs both.
      const before = readState(paths.state);
      const libvirtd = before?.processes["libvirtd"];
      if (libvirtd === undefined) throw new Error("libvirtd not recorded");
      process.kill(libvirtd.pid, "SIGKILL");
      await execa("ip", ["-n", NETNS, "link", "del", BRIDGE]);
      const repair = await lab(
        "up",
        "--servers",
        "2",
        "--memory",
        "512",
        "--controller",
        "/nonexistent/controller/main.js",
      );
      expect(repair.exitCode, repair.stderr).toBe(0);
      expect(repair.stderr).toContain("started libvirtd");
      expect(await driver.status(srv1)).toBe("off");
      expect(
        (await execa("ip", ["-n", NETNS, "link", "show", "dev", BRIDGE], { reject: false })).exitCode,
      ).toBe(0);

      // A domain that vanished.
      await execa("virsh", ["-c", libvirtUri(stateDir), "undefine", "srv2"]);
      expect(await powerCode(driver.status(srv2))).toBe("POWER_TARGET_NOT_FOUND");
      expect(await powerCode(driver.on(srv2))).toBe("POWER_TARGET_NOT_FOUND");

      // Down, and nothing is left.
      const recorded = Object.values(readState(paths.state)?.processes ?? {});
      const gone = await lab("down", "--purge");
      expect(gone.exitCode, gone.stderr).toBe(0);
      await expectNothingLeft([...recorded, libvirtd]);
      expect(await powerCode(driver.status(srv1))).toBe("POWER_UNREACHABLE");
      expect((await lab("down")).stdout).toContain("nothing to remove");

      console.log(
        `[lab measurements] accel=${accel.accel} (${accel.reason}); up=${upSeconds.toFixed(1)} s; ` +
          `power-on → first DHCP request on the bridge: 1 server ${(oneServer / 1000).toFixed(2)} s ` +
          `(driver.on returned after ${(started1 / 1000).toFixed(2)} s); ` +
          `2 servers ${twoServers.map((x) => (x / 1000).toFixed(2)).join(" s, ")} s`,
      );
    },
  );

  it("removes a half-built lab with down and repairs one with up", { timeout: 300_000 }, async () => {
    const crashAfter = (at: UpStep) => (step: UpStep) => {
      if (step === at) throw new Error(`simulated crash after ${at}`);
    };
    const opts = {
      servers: 1,
      memoryMiB: 512,
      vcpus: 1,
      diskGiB: 1,
      accel: "tcg" as const,
      firmware: "bios" as const,
      controllerEntry: "/nonexistent",
      imageCache: "/nonexistent",
    };

    await expect(up(realSystem, config, { ...opts, onStep: crashAfter("libvirt") })).rejects.toThrow(
      /simulated crash/,
    );
    const half = readState(paths.state);
    expect(half?.phase).toBe("building");
    const recorded = Object.values(half?.processes ?? {});
    expect(recorded.map((r) => r.cmd).sort()).toEqual([
      "dnsmasq (router advertisements)",
      "libvirtd",
      "virtlogd",
    ]);
    await down(realSystem, config, { purge: true });
    await expectNothingLeft(recorded);

    await expect(up(realSystem, config, { ...opts, onStep: crashAfter("servers") })).rejects.toThrow(
      /simulated crash/,
    );
    const repaired = await up(realSystem, config, opts);
    expect(repaired.alreadyUp).toBe(false);
    expect(repaired.servers.map((s) => s.name)).toEqual(["srv1"]);
    expect(readState(paths.state)?.phase).toBe("up");
    expect((await up(realSystem, config, opts)).alreadyUp).toBe(true);

    // The controller hook: when the controller is built, `up` starts it in the namespace
    // with its API socket reachable from here, and `down` stops it.
    const entry = path.join(ROOT, "controller/dist/main.js");
    const withController = await up(realSystem, config, { ...opts, controllerEntry: entry });
    expect(withController.controller).toMatchObject({ started: true });
    if (withController.controller.started) {
      expect(readState(paths.state)?.processes["controller"]?.pid).toBe(
        withController.controller.process.pid,
      );
      // The servers were registered with the controller, with their power driver.
      const token = readFileSync(paths.controllerToken, "utf8").trim();
      const res = await execa(
        "curl",
        [
          "-s",
          "--unix-socket",
          paths.controllerSocket,
          "-H",
          `authorization: Bearer ${token}`,
          "http://lab/v1/machines",
        ],
        { reject: false },
      );
      const machines = (JSON.parse(res.stdout) as { items: { name: string; powerDriver: string }[] }).items;
      expect(machines.map((m) => [m.name, m.powerDriver])).toEqual([["srv1", "libvirt"]]);
    }

    const all = Object.values(readState(paths.state)?.processes ?? {});
    await down(realSystem, config, { purge: true });
    await expectNothingLeft(all);
  });
});
