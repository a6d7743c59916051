// The controller's side of host setup: the install-time certificate (real openssl) and VIP
// tables handed to the host agent as guest-network commands (real store).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostCa } from "../src/guests/ca.js";
import { createExec, type Exec } from "../src/guests/exec.js";
import { CLIENT_DN, GUEST_NETWORK_JOB, HostSetup } from "../src/guests/host-setup.js";
import { createLogger } from "../src/log.js";
import { tempDb, type TempDb } from "./helpers/db.js";

let t: TempDb;
let setup: HostSetup;
let ca: HostCa;
let machineId: string;
const network = { name: "weft-guests", bridge: "weftbr0", gateway: "10.78.0.1", prefix: 16 };

beforeAll(async () => {
  t = tempDb("weft-hostsetup-");
  const exec = createExec(createLogger("silent"));
  ca = new HostCa(path.join(t.dir, "pki"), exec, { bits: 2048 });
  setup = new HostSetup({
    db: t.db,
    ca,
    exec,
    log: createLogger("silent"),
    network,
    applyTimeoutMs: 3000,
    probeTimeoutMs: 0,
    sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))),
  });
  machineId = (await t.db.machine.create({ data: { name: "srv1" } })).id;
});
afterAll(() => t.cleanup());

describe("HostSetup", () => {
  it("issues the host's certificate for its name and address and keeps no copy of the key", async () => {
    const tls = await setup.tlsFor("srv1", ["10.77.0.100"]);
    expect(tls.allowedClients).toEqual([CLIENT_DN]);
    expect(tls.serverKey).toMatch(/PRIVATE KEY/);
    expect(fs.existsSync(path.join(ca.dir, "hosts", "srv1", "serverkey.pem"))).toBe(false);
    const cert = path.join(t.dir, "c.pem");
    fs.writeFileSync(cert, tls.serverCert);
    const text = execFileSync("openssl", ["x509", "-noout", "-text", "-in", cert], { encoding: "utf8" });
    expect(text).toMatch(/DNS:srv1, IP Address:10\.77\.0\.100/);
    await ca.verify(cert, "sslserver");
    // The controller's client certificate exists for the qemu+tls URI, with the DN the host admits.
    const client = execFileSync(
      "openssl",
      ["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", path.join(ca.clientDir, "clientcert.pem")],
      { encoding: "utf8" },
    );
    expect(client.trim()).toBe(`subject=${CLIENT_DN.split(",").reverse().join(",")}`);
  });

  it("resolves once the host agent reports the table applied, and fails with its reason", async () => {
    const agent = async (state: "succeeded" | "failed") => {
      for (;;) {
        const job = await t.db.job.findFirst({ where: { kind: GUEST_NETWORK_JOB, state: "pending" } });
        if (job) {
          expect(job.params).toMatchObject({ network, nft: expect.stringContaining("table ip weft") });
          await t.db.job.update({
            where: { id: job.id },
            data: { state, ...(state === "failed" ? { error: "NFT_SCRIPT_REFUSED: no" } : {}) },
          });
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const script = "table ip weft {}\ndelete table ip weft\ntable ip weft {\n}\n";
    await Promise.all([setup.applyNft(machineId, script), agent("succeeded")]);
    await expect(Promise.all([setup.applyNft(machineId, script), agent("failed")])).rejects.toMatchObject({
      code: "VIP_RULES_NOT_APPLIED",
    });
    await expect(setup.applyNft(machineId, script)).rejects.toMatchObject({ code: "HOST_AGENT_SILENT" });
  });

  it("reports a host whose libvirt does not answer over TLS", async () => {
    const refused: Exec = async () => ({ exitCode: 1, stdout: "", stderr: "error: unable to connect" });
    const s = new HostSetup({
      db: t.db,
      ca,
      exec: refused,
      log: createLogger("silent"),
      network,
      probeTimeoutMs: 0,
    });
    const r = await s.probe("10.77.0.100");
    expect(r).toMatchObject({ ok: false, version: null, error: "error: unable to connect" });
    expect(r.uri).toMatch(/^qemu\+tls:\/\/10\.77\.0\.100\/system\?pkipath=/);
  });
});
