// The controller's CA for libvirt over TLS, with the real openssl.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HostCa } from "../src/guests/ca.js";
import { createExec } from "../src/guests/exec.js";
import { createLogger } from "../src/log.js";

let dir: string;
let ca: HostCa;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-ca-"));
  ca = new HostCa(path.join(dir, "pki"), createExec(createLogger("silent")), { bits: 2048 });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const text = (f: string) =>
  execFileSync("openssl", ["x509", "-noout", "-text", "-in", f], { encoding: "utf8" });
const mode = (f: string) => fs.statSync(f).mode & 0o777;

describe("HostCa", () => {
  it("creates a CA once, key 0600 in a 0700 directory", async () => {
    await ca.ensureCa();
    const first = fs.readFileSync(ca.caCertFile, "utf8");
    await ca.ensureCa();
    expect(fs.readFileSync(ca.caCertFile, "utf8")).toBe(first);
    expect(mode(ca.caKeyFile)).toBe(0o600);
    expect(mode(path.dirname(ca.caKeyFile))).toBe(0o700);
    expect(text(ca.caCertFile)).toMatch(/CA:TRUE/);
  });

  it("issues a host's server certificate with name and IP SANs", async () => {
    const s = await ca.issueServer({ name: "host1", addresses: ["192.0.2.10", "2001:db8::10"] });
    const t = text(s.certFile);
    expect(t).toMatch(/Subject: O ?= ?Weft, CN ?= ?host1/);
    expect(t).toMatch(/DNS:host1, IP Address:192\.0\.2\.10, IP Address:2001:DB8:0:0:0:0:0:10/);
    expect(t).toMatch(/TLS Web Server Authentication/);
    expect(t).toMatch(/Digital Signature, Key Encipherment/);
    expect(mode(s.keyFile)).toBe(0o600);
    expect(s.caCert).toContain("BEGIN CERTIFICATE");
    await ca.verify(s.certFile, "sslserver");
    await expect(ca.verify(s.certFile, "sslclient")).rejects.toMatchObject({ code: "CERT_INVALID" });
  });

  it("issues the controller's client certificate beside the CA (pkipath layout)", async () => {
    const c = await ca.ensureClient();
    expect(text(c.certFile)).toMatch(/CN ?= ?weft-controller/);
    expect(text(c.certFile)).toMatch(/TLS Web Client Authentication/);
    expect(mode(c.keyFile)).toBe(0o600);
    expect(fs.readdirSync(ca.clientDir).sort()).toEqual(["cacert.pem", "clientcert.pem", "clientkey.pem"]);
    await ca.verify(c.certFile, "sslclient");
    expect(ca.libvirtUri("192.0.2.10")).toBe(
      `qemu+tls://192.0.2.10/system?pkipath=${encodeURIComponent(ca.clientDir)}`,
    );
    expect(ca.libvirtUri("2001:db8::10")).toMatch(/^qemu\+tls:\/\/\[2001:db8::10\]\/system/);
  });

  it("refuses names and addresses that could smuggle extensions", async () => {
    await expect(ca.issueServer({ name: "host1,DNS:evil", addresses: [] })).rejects.toThrow(/bad host name/);
    await expect(ca.issueServer({ name: "h", addresses: ["1.2.3.4,IP:5.6.7.8"] })).rejects.toThrow(
      /not an IP/,
    );
    await expect(ca.issueServer({ name: "h/../../x", addresses: [] })).rejects.toThrow(/bad host name/);
    expect(() => ca.libvirtUri("a b")).toThrow(/bad address/);
  });
});
