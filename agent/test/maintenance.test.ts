import { afterEach, describe, expect, it } from "vitest";
import type { Inventory } from "@weft/wire";
import { ControllerClient } from "../src/client.js";
import {
  heartbeatDelayMs,
  memoryTokenStore,
  runMaintenance,
  type MaintenanceDeps,
} from "../src/maintenance.js";
import { fastClock } from "./helpers/clock.js";
import { fakeController, type FakeController } from "./helpers/fake-controller.js";
import { serveImage, type ImageServer } from "./helpers/image-server.js";
import { installEnv, type InstallEnv } from "./helpers/install-env.js";
import { cleanup } from "./helpers/tmp.js";

const NONCE = "boot-nonce-0123456789";
const inventory: Inventory = {
  firmware: "bios",
  system: { uuid: null, serial: null, vendor: "QEMU", product: null },
  cpu: { count: 2, model: null, mhz: null },
  memoryBytes: 2 ** 31,
  disks: [{ name: "vda", sizeBytes: 16 << 20, model: null, serial: null, rotational: true }],
  nics: [{ name: "ens3", mac: "52:54:00:00:00:01", addresses: [], speedMbps: null }],
  kernel: "6.1.0",
};

let ctl: FakeController | undefined;
let img: ImageServer | undefined;
let env: InstallEnv | undefined;
afterEach(async () => {
  await ctl?.close();
  await img?.close();
  if (env) {
    expect(env.stub.unstubbed).toEqual([]);
    await cleanup(env.dir);
  }
  ctl = img = env = undefined;
});

function deps(
  e: InstallEnv,
  controller: FakeController,
  over: Partial<MaintenanceDeps> = {},
): MaintenanceDeps & { sleeps: number[] } {
  const clock = fastClock();
  return {
    sleeps: clock.sleeps,
    config: { mode: "maintenance", controllerUrl: controller.url, nonce: NONCE },
    client: new ControllerClient({ baseUrl: controller.url, clock, retry: { attempts: 2, baseMs: 10 } }),
    log: e.log,
    clock,
    random: () => 0.5,
    inventory: () => Promise.resolve(inventory),
    context: { exec: e.ctx.exec, log: e.log, clock, fetch: globalThis.fetch, disks: e.settings },
    reboot: () => Promise.resolve(),
    tokens: memoryTokenStore(),
    uptimeSeconds: () => 12,
    ...over,
  };
}

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("maintenance mode against a fake controller", { timeout: 30_000 }, () => {
  it("enlists with the nonce, runs the install command from a heartbeat, reports RUNNING…SUCCEEDED, then reboots", async () => {
    env = await installEnv({ imageHas: "kernel" });
    img = await serveImage(env.gz);
    const install = { id: "cmd-1", kind: "install-host", params: env.params(img.url) };
    // The controller repeats the command until it hears of it; the agent must run it once.
    ctl = await fakeController({ nonce: NONCE, script: [[install], [install]], intervalSeconds: 5 });
    const stop = new AbortController();
    let reportsAtReboot = -1;
    const d = deps(env, ctl, {
      signal: stop.signal,
      reboot: () => {
        reportsAtReboot = ctl?.reports.length ?? -1;
        stop.abort();
        return Promise.resolve();
      },
    });
    await runMaintenance(d);

    expect(ctl.enlists).toEqual([{ nonce: NONCE, inventory }]);
    expect(ctl.heartbeats.length).toBeGreaterThanOrEqual(2);
    expect(ctl.heartbeats[0]).toEqual({ mode: "maintenance", uptimeSeconds: 12, running: [] });
    expect(ctl.heartbeats.some((h) => h.running.includes("cmd-1"))).toBe(true);
    const states = ctl.reports.map((r) => r.report.state);
    expect(ctl.reports.every((r) => r.id === "cmd-1")).toBe(true);
    expect(states.at(-1)).toBe("SUCCEEDED");
    expect(states.slice(0, -1).every((s) => s === "RUNNING")).toBe(true);
    const progress = ctl.reports.map((r) => r.report.progress ?? -1).filter((p) => p >= 0);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress[0]).toBe(0);
    expect(progress.at(-1)).toBe(1);
    const stages = ctl.reports.map((r) => r.report.stage).filter(Boolean);
    expect(stages).toEqual(expect.arrayContaining(["partition", "write-image", "resize", "bootloader"]));
    expect(reportsAtReboot).toBe(ctl.reports.length); // SUCCEEDED was delivered before the reboot
    expect(env.stub.calls.filter((c) => c.startsWith("sgdisk -Z"))).toHaveLength(1);
    // Heartbeat waits: 30-60 % of the announced interval.
    for (const ms of d.sleeps) expect(ms).toBe(heartbeatDelayMs(5, () => 0.5));
    expect(env.log.lines[0]).toBe("weft-agent: collecting inventory");
  });

  it("keeps its SUCCEEDED report until a restarting controller takes it, and only then reboots", async () => {
    env = await installEnv({ imageHas: "kernel" });
    img = await serveImage(env.gz);
    const install = { id: "cmd-2", kind: "install-host", params: env.params(img.url) };
    // Each report call tries twice (deps' retry policy): of five refusals, two calls fail outright
    // and the third gets through on its second try.
    ctl = await fakeController({ nonce: NONCE, script: [[install]], unavailableFinalReports: 5 });
    const stop = new AbortController();
    let reportsAtReboot: string[] = [];
    const d = deps(env, ctl, {
      signal: stop.signal,
      reboot: () => {
        reportsAtReboot = ctl?.reports.map((r) => r.report.state) ?? [];
        stop.abort();
        return Promise.resolve();
      },
    });
    await runMaintenance(d);
    expect(reportsAtReboot.at(-1)).toBe("SUCCEEDED");
    expect(
      env.log.lines.filter((l) => l.includes("command report not delivered; trying again")),
    ).toHaveLength(2);
  });

  it("stops heartbeating before its final report revokes its token, and reboots all the same", async () => {
    env = await installEnv({ imageHas: "kernel" });
    img = await serveImage(env.gz);
    const install = { id: "cmd-3", kind: "install-host", params: env.params(img.url) };
    ctl = await fakeController({ nonce: NONCE, script: [[install]], revokeOnSuccess: true });
    let rebooted = false;
    const d = deps(env, ctl, {
      // A slow reboot (sync on a busy disk): heartbeats sent meanwhile would be refused.
      reboot: async () => {
        await new Promise((r) => setTimeout(r, 300));
        rebooted = true;
      },
    });
    await runMaintenance(d);
    expect(rebooted).toBe(true);
    expect(ctl.reports.at(-1)?.report.state).toBe("SUCCEEDED");
    expect(env.log.lines).toContain("weft-agent: heartbeats stopped for the reboot");
  });

  it("reports FAILED with the error body for a command it cannot run, and does not reboot", async () => {
    env = await installEnv({ imageHas: "kernel" });
    img = await serveImage(env.gz);
    const bad = {
      id: "cmd-bad",
      kind: "install-host",
      params: env.params(img.url, { sha256: "e".repeat(64) }),
    };
    const qcow = {
      id: "cmd-qcow",
      kind: "install-host",
      params: { ...env.params(img.url), image: { ...env.params(img.url).image, format: "qcow2" } },
    };
    ctl = await fakeController({ nonce: NONCE, script: [[bad, qcow]] });
    const stop = new AbortController();
    let rebooted = false;
    const d = deps(env, ctl, {
      signal: stop.signal,
      reboot: () => {
        rebooted = true;
        return Promise.resolve();
      },
    });
    const watcher = setInterval(() => {
      const ids = new Set(ctl?.reports.filter((r) => r.report.state !== "RUNNING").map((r) => r.id));
      if (ids.size === 2) stop.abort();
    }, 20);
    await runMaintenance(d).finally(() => clearInterval(watcher));
    const final = (id: string) => ctl?.reports.filter((r) => r.id === id).at(-1)?.report;
    expect(final("cmd-bad")).toMatchObject({
      state: "FAILED",
      error: { type: "integrity", code: "IMAGE_CHECKSUM_MISMATCH" },
    });
    expect(final("cmd-qcow")).toMatchObject({ state: "FAILED", error: { code: "IMAGE_FORMAT_UNSUPPORTED" } });
    expect(ctl.reports.some((r) => r.report.state === "SUCCEEDED")).toBe(false);
    expect(rebooted).toBe(false);
  });

  it("stops with a clear error when the controller refuses the token, instead of looping", async () => {
    env = await installEnv();
    ctl = await fakeController({ nonce: NONCE, refuseTokens: true });
    await expect(runMaintenance(deps(env, ctl))).rejects.toMatchObject({
      type: "unauthorized",
      code: "TOKEN_REFUSED",
      message: expect.stringContaining("refused this agent's token"),
    });
    expect(ctl.heartbeats).toHaveLength(0);
    expect(ctl.refused).toEqual(["TOKEN_INVALID"]); // one try, no retry loop
  });

  it("stops when the nonce is refused, and reuses a saved token after a restart", async () => {
    env = await installEnv();
    ctl = await fakeController({ nonce: "another-nonce-0123456789" });
    await expect(runMaintenance(deps(env, ctl))).rejects.toMatchObject({ code: "NONCE_REFUSED" });

    await ctl.close();
    ctl = await fakeController({ nonce: NONCE, token: "tok-saved" });
    const tokens = memoryTokenStore();
    await tokens.save({ machineId: "m-1", token: "tok-saved" });
    const stop = new AbortController();
    const d = deps(env, ctl, { tokens, signal: stop.signal });
    const watcher = setInterval(() => ctl && ctl.heartbeats.length >= 2 && stop.abort(), 10);
    await runMaintenance(d).finally(() => clearInterval(watcher));
    expect(ctl.enlists).toHaveLength(0);
    expect(ctl.heartbeats.length).toBeGreaterThanOrEqual(2);
  });

  it("keeps trying to enlist while the controller is unreachable", async () => {
    env = await installEnv();
    ctl = await fakeController({ nonce: NONCE });
    const stop = new AbortController();
    let calls = 0;
    const flaky: typeof fetch = (input, init) => {
      calls++;
      if (calls <= 12)
        return Promise.reject(new TypeError("fetch failed", { cause: { code: "ECONNREFUSED" } }));
      return globalThis.fetch(input, init);
    };
    const d = deps(env, ctl, { signal: stop.signal });
    d.client = new ControllerClient({
      baseUrl: ctl.url,
      clock: d.clock,
      fetch: flaky,
      retry: { attempts: 3, baseMs: 10 },
    });
    const watcher = setInterval(() => ctl && ctl.heartbeats.length >= 1 && stop.abort(), 10);
    await runMaintenance(d).finally(() => clearInterval(watcher));
    expect(ctl.enlists).toHaveLength(1);
    expect(env.log.lines.filter((l) => l.includes("enlisting again later"))).toHaveLength(4);
  });

  it("heartbeat jitter stays within 30-60 % of the interval", () => {
    expect(heartbeatDelayMs(10, () => 0)).toBe(3000);
    expect(heartbeatDelayMs(10, () => 0.999999)).toBe(6000);
  });
});
