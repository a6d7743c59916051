// Faults of the install flow on the controller's side, with the real controller process driven
// over HTTP the way the agent drives it: the controller is killed outright in the middle of an
// install and started again on the same data, and a server never comes back after its reboot.
// (The nightly does the first with a real server in the lab; see scripts/nightly.ts.)
import crypto from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, runCli, startController, tempDir, type Running } from "./helpers/controller.js";
import { writeImage } from "./helpers/images.js";

const REBOOT_DEADLINE_S = 3;
const args = ["--state-timeouts", `rebooting=${REBOOT_DEADLINE_S}`];
let ctl: Running;
let dataDir: string;

const api = (method: string, p: string, body?: object, token = ctl.token()) =>
  call({ url: ctl.url }, method, p, { token, ...(body ? { body } : {}) });
const cliEnv = () => ({ WEFT_SOCKET: ctl.socket, WEFT_TOKEN_FILE: ctl.tokenFile });
const machine = async (name: string) =>
  (await api("GET", `/v1/machines/${name}`)).json as { state: string; lastError: string | null };

/** Registers a machine, lets its "agent" enlist, deploys it; returns the agent's tokens and job. */
async function deployed(name: string, n: number) {
  const mac = `52:54:00:77:01:0${n}`;
  expect((await api("POST", "/v1/machines", { name, macs: [mac] })).status).toBe(201);
  const script = (await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${mac}`)).text;
  const nonce = /weft\.nonce=(\S+)/.exec(script)?.[1] ?? "";
  const inventory = {
    firmware: "bios",
    system: { uuid: `4c4c4544-0000-1000-8000-00000000010${n}`, serial: null, vendor: "QEMU", product: null },
    cpu: { count: 1, model: null, mhz: 2400 },
    memoryBytes: 2 ** 31,
    disks: [{ name: "vda", sizeBytes: 8 * 1024 ** 3, model: null, serial: null, rotational: true }],
    nics: [{ name: "ens3", mac, addresses: [], speedMbps: null }],
    kernel: "6.1.0",
  };
  const en = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", { body: { nonce, inventory } });
  expect(en.status).toBe(200);
  const agent = (en.json as { token: string }).token;
  const d = await api("POST", `/v1/machines/${name}/deploy`, { image: "host-bookworm" });
  expect(d.status).toBe(202);
  const job = (d.json as { job: string }).job;
  const hb = await api("POST", "/v1/agent/heartbeat", { mode: "maintenance", uptimeSeconds: 5 }, agent);
  const cmd = (hb.json as { commands: { id: string; params: { host: { token: string } } }[] }).commands[0];
  expect(cmd?.id).toBe(job);
  return { agent, host: cmd!.params.host.token, job };
}

const report = (job: string, agent: string, body: object) =>
  api("POST", `/v1/agent/commands/${job}`, body, agent);

beforeAll(async () => {
  dataDir = tempDir();
  ctl = await startController(dataDir);
  const images = path.join(dataDir, "build");
  for (const [name, kind, format, size] of [
    ["maintenance-kernel", "kernel", "bzImage", 4096],
    ["maintenance-initrd", "initrd", "cpio.lz4", 8192],
    ["host-bookworm", "host-rootfs", "ext4.gz", 100_000],
  ] as const) {
    const r = await api("POST", "/v1/images", {
      manifest: writeImage(images, name, kind, format, crypto.randomBytes(size)),
    });
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await ctl?.stop();
});

describe("install faults", () => {
  it("finishes an install across a controller killed with SIGKILL and started again", async () => {
    const { agent, host, job } = await deployed("k1", 1);
    expect((await report(job, agent, { state: "RUNNING", stage: "write-image", progress: 0.4 })).status).toBe(
      204,
    );
    await ctl.stop("SIGKILL");
    ctl = await startController(dataDir);
    // The job and the agent's token outlived the process; the install goes on where it was.
    expect((await machine("k1")).state).toBe("deploying");
    expect((await report(job, agent, { state: "RUNNING", stage: "write-image", progress: 0.8 })).status).toBe(
      204,
    );
    expect((await report(job, agent, { state: "SUCCEEDED", stage: "reboot" })).status).toBe(204);
    expect((await machine("k1")).state).toBe("rebooting");
    const reg = await api(
      "POST",
      "/v1/agent/host/register",
      {
        capacity: { cpus: 1, cpuMhz: 2400, memoryMiB: 2048, diskBytes: 8e9, kvm: true },
        libvirt: { uri: "qemu:///system", version: "9.0.0" },
        address: "127.0.0.1",
      },
      host,
    );
    expect(reg.status).toBe(204);
    expect((await machine("k1")).state).toBe("host-ready");
    const j = (await api("GET", `/v1/jobs/${job}`)).json as { state: string; progress: number };
    expect(j).toMatchObject({ state: "succeeded", progress: 1 });
  }, 60_000);

  it("fails a server that never comes back after its reboot, and `weft machines show` says why", async () => {
    // An operator's short deadline for rebooting, so the test need not wait the default 10 min.
    await ctl.stop();
    ctl = await startController(dataDir, args);
    const { agent, job } = await deployed("k2", 2);
    expect((await report(job, agent, { state: "SUCCEEDED", stage: "reboot" })).status).toBe(204);
    expect((await machine("k2")).state).toBe("rebooting");
    // The host never registers. The sweep runs every 5 s; the deadline is a few seconds.
    const until = Date.now() + 30_000;
    while ((await machine("k2")).state === "rebooting" && Date.now() < until)
      await new Promise((r) => setTimeout(r, 500));
    expect(await machine("k2")).toMatchObject({
      state: "failed",
      lastError: `no progress in rebooting for ${REBOOT_DEADLINE_S} s`,
    });
    const shown = await runCli(["machines", "show", "k2"], cliEnv());
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/failed/);
    expect(shown.stdout).toContain(`no progress in rebooting for ${REBOOT_DEADLINE_S} s`);
  }, 60_000);
});
