// The controller's side of the install flow, driven over HTTP the way the agent drives it:
// boot script → nonce exchange → deploy → install command → host registration → release.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDb } from "../src/store/db.js";
import { call, startController, tempDir, type Running } from "./helpers/controller.js";
import { writeImage } from "./helpers/images.js";

let ctl: Running;
let token: string;
const MAC = "52:54:00:77:00:11";
const api = (method: string, p: string, body?: object, t = token) =>
  call({ url: ctl.url }, method, p, { token: t, ...(body ? { body } : {}) });
const inventory = (mac = MAC, uuid = "4c4c4544-0000-1000-8000-000000000011") => ({
  firmware: "bios",
  system: { uuid, serial: "SN11", vendor: "QEMU", product: "Standard PC" },
  cpu: { count: 2, model: "QEMU TCG", mhz: 2400 },
  memoryBytes: 2 * 1024 ** 3,
  disks: [{ name: "vda", sizeBytes: 8 * 1024 ** 3, model: null, serial: null, rotational: true }],
  nics: [{ name: "ens3", mac, addresses: ["10.77.0.100/24"], speedMbps: null }],
  kernel: "6.1.0",
});
const nonceOf = (script: string) => /weft\.nonce=(\S+)/.exec(script)?.[1] ?? "";
const machine = async () =>
  (await api("GET", "/v1/machines/m11")).json as { id: string; state: string; lastError: string | null };
let images: string;

beforeAll(async () => {
  ctl = await startController(tempDir(), ["--host-kernel-args", "tsc=reliable"]);
  token = ctl.token();
  images = path.join(ctl.dataDir, "build");
  for (const [name, kind, format, size] of [
    ["maintenance-kernel", "kernel", "bzImage", 4096],
    ["maintenance-initrd", "initrd", "cpio.zst", 8192],
    ["host-bookworm", "host-rootfs", "ext4.gz", 100_000],
  ] as const) {
    const r = await api("POST", "/v1/images", {
      manifest: writeImage(images, name, kind, format, crypto.randomBytes(size)),
    });
    expect(r.status).toBe(201);
  }
  expect((await api("POST", "/v1/machines", { name: "m11", macs: [MAC] })).status).toBe(201);
});
afterAll(async () => {
  await ctl?.stop();
});

describe("images", () => {
  it("serves an image with its checksum and resumes with a Range request", async () => {
    const full = await call({ url: ctl.url }, "GET", "/boot/images/host-bookworm");
    expect(full.status).toBe(200);
    const sha = crypto.createHash("sha256").update(Buffer.from(full.text, "latin1")).digest("hex");
    expect(full.headers["x-weft-sha256"]).toBeDefined();
    const part = await new Promise<{ status: number; range: string | undefined; length: string | undefined }>(
      (resolve) => {
        void import("node:http").then((http) =>
          http
            .get(`${ctl.url}/boot/images/host-bookworm`, { headers: { range: "bytes=99990-" } }, (res) => {
              res.resume();
              resolve({
                status: res.statusCode!,
                range: res.headers["content-range"],
                length: res.headers["content-length"],
              });
            })
            .end(),
        );
      },
    );
    expect(part).toEqual({ status: 206, range: "bytes 99990-99999/100000", length: "10" });
    const past = await new Promise<number>((resolve) => {
      void import("node:http").then((http) =>
        http
          .get(`${ctl.url}/boot/images/host-bookworm`, { headers: { range: "bytes=200000-" } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          })
          .end(),
      );
    });
    expect(past).toBe(416);
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
  });

  it("refuses an artifact whose bytes do not match its manifest, and keeps no row", async () => {
    const m = writeImage(images, "tampered", "host-rootfs", "ext4.gz", Buffer.from("good bytes"));
    fs.writeFileSync(path.join(images, "tampered.bin"), "evil bytes");
    const r = await api("POST", "/v1/images", { manifest: m });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "IMAGE_CHECKSUM_MISMATCH" });
    expect((await api("GET", "/v1/images/tampered")).status).toBe(404);
  });

  it.each([
    ["a relative manifest path", { manifest: "../../etc/passwd" }, "BODY_INVALID"],
    ["a file that is not a manifest", { manifest: "/etc/passwd" }, "MANIFEST_UNREADABLE"],
  ])("refuses %s", async (_n, body, code) => {
    const r = await api("POST", "/v1/images", body);
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code });
  });

  it("does not serve files outside the images by path tricks", async () => {
    for (const p of [
      "/boot/images/..%2F..%2Fadmin.token",
      "/boot/images/%2e%2e",
      "/boot/ipxe-bin/..%2Fpasswd",
    ]) {
      const r = await call({ url: ctl.url }, "GET", p);
      expect(r.status).toBe(404);
      expect(r.text).not.toContain("weft_");
    }
  });
});

describe("the install flow over the agent protocol", () => {
  let agentToken = "";
  let hostToken = "";
  let jobId = "";

  it("renders a maintenance boot script with a one-time nonce for an unknown-state machine", async () => {
    const r = await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`);
    expect(r.text).toMatch(/^#!ipxe\n/);
    expect(r.text).toContain("/boot/images/maintenance-kernel");
    expect(r.text).toMatch(/weft\.url=http:\/\/127\.0\.0\.1:\d+ /);
    expect(nonceOf(r.text)).toMatch(/^nonce_/);
  });

  it("refuses a bad query and an unknown machine gets a retry script", async () => {
    expect((await call({ url: ctl.url }, "GET", "/boot/ipxe?mac=zz")).status).toBe(400);
    const r = await call({ url: ctl.url }, "GET", "/boot/ipxe?mac=52:54:00:00:00:99");
    expect(r.text).toContain("unknown machine");
  });

  it("refuses an inventory that does not belong to the machine", async () => {
    const nonce = nonceOf((await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text);
    const r = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", {
      body: { nonce, inventory: inventory("52:54:00:00:00:98") },
    });
    expect(r.status).toBe(403);
    expect(r.json).toMatchObject({ code: "IDENTITY_MISMATCH" });
    expect((await machine()).state).toBe("discovered");
  });

  it("exchanges the nonce once for a token and makes the machine ready", async () => {
    const old = nonceOf((await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text);
    const nonce = nonceOf((await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text);
    const stale = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", {
      body: { nonce: old, inventory: inventory() },
    });
    expect(stale.json).toMatchObject({ code: "NONCE_REVOKED" });
    const r = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", {
      body: { nonce, inventory: inventory() },
    });
    expect(r.status).toBe(200);
    agentToken = (r.json as { token: string }).token;
    expect(agentToken).toMatch(/^agent_/);
    const again = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", {
      body: { nonce, inventory: inventory() },
    });
    expect(again.status).toBe(401);
    expect(again.json).toMatchObject({ code: "NONCE_USED" });
    expect(await machine()).toMatchObject({ state: "ready" });
    const shown = (await api("GET", "/v1/machines/m11")).json as {
      events: { toState: string | null }[];
      uuid: string;
    };
    expect(shown.events.map((e) => e.toState).filter(Boolean)).toEqual(["discovered", "enlisting", "ready"]);
    expect(shown.uuid).toBe("4c4c4544-0000-1000-8000-000000000011");
  });

  it("an agent token is not an operator token, and an operator token is not an agent's", async () => {
    expect((await api("GET", "/v1/machines", undefined, agentToken)).status).toBe(401);
    const r = await api("POST", "/v1/agent/heartbeat", { mode: "maintenance", uptimeSeconds: 1 }, token);
    expect(r.status).toBe(401);
  });

  it("deploy answers 202 at once; the next heartbeat carries the install command", async () => {
    const bad = await api("POST", "/v1/machines/m11/deploy", { image: "maintenance-kernel" });
    expect(bad.json).toMatchObject({ code: "IMAGE_KIND" });
    const r = await api("POST", "/v1/machines/m11/deploy", { image: "host-bookworm" });
    expect(r.status).toBe(202);
    jobId = (r.json as { job: string }).job;
    expect(r.headers.location).toBe(`/v1/jobs/${jobId}`);
    const twice = await api("POST", "/v1/machines/m11/deploy", { image: "host-bookworm" });
    expect(twice.json).toMatchObject({ code: "INVALID_TRANSITION" });
    const hb = await api(
      "POST",
      "/v1/agent/heartbeat",
      { mode: "maintenance", uptimeSeconds: 5 },
      agentToken,
    );
    const cmds = (
      hb.json as {
        commands: {
          id: string;
          kind: string;
          params: { host: { token: string }; image: { sha256: string }; kernelArgs?: string[] };
        }[];
      }
    ).commands;
    expect(cmds).toHaveLength(1);
    expect(cmds[0]).toMatchObject({ id: jobId, kind: "install-host" });
    // --host-kernel-args reaches the agent, which adds them to the installed system's boot entry.
    expect(cmds[0]!.params.kernelArgs).toEqual(["tsc=reliable"]);
    hostToken = cmds[0]!.params.host.token;
    const empty = await api(
      "POST",
      "/v1/agent/heartbeat",
      { mode: "maintenance", uptimeSeconds: 6 },
      agentToken,
    );
    expect((empty.json as { commands: unknown[] }).commands).toHaveLength(0);
  });

  it("records stages and progress; another machine's agent cannot report on this job", async () => {
    for (const [stage, progress] of [
      ["partition", 0.05],
      ["write-image", 0.5],
      ["bootloader", 0.95],
    ] as const) {
      const r = await api(
        "POST",
        `/v1/agent/commands/${jobId}`,
        { state: "RUNNING", stage, progress },
        agentToken,
      );
      expect(r.status).toBe(204);
    }
    const job = (await api("GET", `/v1/jobs/${jobId}`)).json as {
      progress: number;
      steps: { name: string }[];
    };
    expect(job.progress).toBe(0.95);
    expect(job.steps.map((s) => s.name)).toEqual(["partition", "write-image", "bootloader"]);
    const bogus = await api("POST", `/v1/agent/commands/${jobId}`, { state: "SUCCEEDED" }, "agent_forged");
    expect(bogus.status).toBe(401);
  });

  it("success moves the machine to rebooting, kills the maintenance token, and boots the local disk", async () => {
    const r = await api(
      "POST",
      `/v1/agent/commands/${jobId}`,
      { state: "SUCCEEDED", stage: "reboot" },
      agentToken,
    );
    expect(r.status).toBe(204);
    expect((await machine()).state).toBe("rebooting");
    const reused = await api(
      "POST",
      "/v1/agent/heartbeat",
      { mode: "maintenance", uptimeSeconds: 9 },
      agentToken,
    );
    expect(reused.status).toBe(401);
    expect((await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text).toContain("local disk");
  });

  it("the host agent registers with its own token and the machine is host-ready", async () => {
    const body = {
      capacity: { cpus: 2, cpuMhz: 2400, memoryMiB: 2048, diskBytes: 8e9, kvm: true },
      libvirt: { uri: "qemu:///system", version: "9.0.0" },
      address: "10.77.0.100",
    };
    expect((await api("POST", "/v1/agent/host/register", { ...body, colour: 1 }, hostToken)).status).toBe(
      400,
    );
    expect((await api("POST", "/v1/agent/host/register", body, hostToken)).status).toBe(204);
    expect((await machine()).state).toBe("host-ready");
  });

  it("release is refused while the host runs guests, and changes nothing", async () => {
    const db = openDb(`file:${path.join(ctl.dataDir, "weft.db")}`);
    try {
      const host = await db.host.findFirstOrThrow({ where: { machine: { name: "m11" } } });
      const image = await db.image.findFirstOrThrow();
      await db.guest.create({
        data: {
          name: "web-1",
          hostId: host.id,
          imageId: image.id,
          vcpus: 1,
          cpuMhz: 1600,
          memoryMiB: 256,
          diskBytes: 2_000_000_000n,
          netInKBps: 12_500,
          netOutKBps: 12_500,
          dip: "10.78.0.2",
          state: "running",
        },
      });
      const events = await db.event.count();
      const r = await api("POST", "/v1/machines/m11/release", {});
      expect(r.status).toBe(409);
      expect(r.json).toMatchObject({ code: "HOST_HAS_GUESTS", details: { guests: ["web-1"] } });
      expect((await machine()).state).toBe("host-ready");
      expect(await db.event.count()).toBe(events);
      expect(await db.job.count({ where: { kind: "wipe" } })).toBe(0);
      expect((await db.host.findUniqueOrThrow({ where: { id: host.id } })).state).toBe(host.state);
    } finally {
      await db.guest.deleteMany({ where: { name: "web-1" } });
      await db.$disconnect();
    }
  });

  it("release: the host makes its disk unbootable, the maintenance OS wipes it, and the machine is ready", async () => {
    const r = await api("POST", "/v1/machines/m11/release", {});
    expect(r.status).toBe(202);
    expect((await machine()).state).toBe("releasing");
    const hb = await api("POST", "/v1/agent/heartbeat", { mode: "host", uptimeSeconds: 100 }, hostToken);
    const cmd = (hb.json as { commands: { id: string; kind: string }[] }).commands[0]!;
    expect(cmd.kind).toBe("wipe");
    expect(
      (await api("POST", `/v1/agent/commands/${cmd.id}`, { state: "SUCCEEDED" }, hostToken)).status,
    ).toBe(204);
    expect((await machine()).state).toBe("releasing");
    // The host token dies with the host.
    expect(
      (await api("POST", "/v1/agent/heartbeat", { mode: "host", uptimeSeconds: 101 }, hostToken)).status,
    ).toBe(401);
    const script = (await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text;
    expect(script).toContain("maintenance OS");
    const enlisted = await call({ url: ctl.url }, "POST", "/v1/agent/enlist", {
      body: { nonce: nonceOf(script), inventory: inventory() },
    });
    const t = (enlisted.json as { token: string }).token;
    const hb2 = await api("POST", "/v1/agent/heartbeat", { mode: "maintenance", uptimeSeconds: 3 }, t);
    const wipe = (hb2.json as { commands: { id: string; kind: string }[] }).commands[0]!;
    expect(wipe.kind).toBe("wipe");
    expect((await api("POST", `/v1/agent/commands/${wipe.id}`, { state: "SUCCEEDED" }, t)).status).toBe(204);
    expect((await machine()).state).toBe("ready");
  });

  it("a failed command fails the machine with the reason", async () => {
    await api("POST", "/v1/machines/m11/deploy", { image: "host-bookworm" });
    const nonce = nonceOf((await call({ url: ctl.url }, "GET", `/boot/ipxe?mac=${MAC}`)).text);
    const t = (
      (await call({ url: ctl.url }, "POST", "/v1/agent/enlist", { body: { nonce, inventory: inventory() } }))
        .json as { token: string }
    ).token;
    const hb = await api("POST", "/v1/agent/heartbeat", { mode: "maintenance", uptimeSeconds: 1 }, t);
    const cmd = (hb.json as { commands: { id: string }[] }).commands[0]!;
    const error = { type: "image", code: "IMAGE_CHECKSUM_MISMATCH", message: "sha256 differs" };
    await api("POST", `/v1/agent/commands/${cmd.id}`, { state: "FAILED", error }, t);
    expect(await machine()).toMatchObject({
      state: "failed",
      lastError: "IMAGE_CHECKSUM_MISMATCH: sha256 differs",
    });
  });
});
