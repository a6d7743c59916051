// What install-host writes for libvirtd TLS and the host's network, and what host mode accepts
// as a guest nftables table. Real files in a temporary root.
import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkNftScript, networkXml } from "../src/guest-net.js";
import { configureHost, libvirtdConf } from "../src/host-setup.js";

let mnt: string;
beforeEach(async () => {
  mnt = await mkdtemp(join(tmpdir(), "weft-hostsetup-"));
});
afterEach(async () => {
  await rm(mnt, { recursive: true, force: true });
});

function pem(kind: "cert" | "key"): string {
  const dir = execFileSync("mktemp", ["-d"], { encoding: "utf8" }).trim();
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        `${dir}/k`,
        "-out",
        `${dir}/c`,
        "-subj",
        "/CN=t",
        "-days",
        "1",
      ],
      { stdio: "ignore" },
    );
    return execFileSync("cat", [`${dir}/${kind === "cert" ? "c" : "k"}`], { encoding: "utf8" });
  } finally {
    execFileSync("rm", ["-rf", dir]);
  }
}

const mode = async (p: string) => (await lstat(join(mnt, p))).mode & 0o777;

describe("configureHost", () => {
  const tls = () => ({
    caCert: pem("cert"),
    serverCert: pem("cert"),
    serverKey: pem("key"),
    allowedClients: ["O=Weft,CN=weft-controller"],
  });

  it("writes the certificates with libvirt's paths and modes, TLS-only libvirtd and the sockets", async () => {
    const t = tls();
    await configureHost(mnt, t);
    expect(await readFile(join(mnt, "etc/pki/CA/cacert.pem"), "utf8")).toBe(t.caCert);
    expect(await readFile(join(mnt, "etc/pki/libvirt/private/serverkey.pem"), "utf8")).toBe(t.serverKey);
    expect(await mode("etc/pki/CA/cacert.pem")).toBe(0o644);
    expect(await mode("etc/pki/libvirt/servercert.pem")).toBe(0o644);
    expect(await mode("etc/pki/libvirt/private/serverkey.pem")).toBe(0o600);
    expect(await mode("etc/pki/libvirt/private")).toBe(0o700);
    const conf = await readFile(join(mnt, "etc/libvirt/libvirtd.conf"), "utf8");
    expect(conf).toMatch(/^listen_tls = 1$/m);
    expect(conf).toMatch(/^listen_tcp = 0$/m);
    expect(conf).toMatch(/^tls_no_verify_certificate = 0$/m);
    expect(conf).toMatch(/^tls_allowed_dn_list = \["O=Weft,CN=weft-controller"\]$/m);
    expect(await readlink(join(mnt, "etc/systemd/system/sockets.target.wants/libvirtd-tls.socket"))).toBe(
      "/lib/systemd/system/libvirtd-tls.socket",
    );
    expect(await readlink(join(mnt, "etc/systemd/system/libvirtd-tcp.socket"))).toBe("/dev/null");
    expect(
      await readFile(join(mnt, "etc/systemd/network/20-weft-dhcp.network.d/10-client-id.conf"), "utf8"),
    ).toMatch(/^ClientIdentifier=mac$/m);
    expect(await readFile(join(mnt, "etc/sysctl.d/60-weft-forward.conf"), "utf8")).toMatch(/ip_forward = 1/);
  });

  it("refuses a key that is not a PEM key, and a symlink the image placed on the way", async () => {
    await expect(configureHost(mnt, { ...tls(), serverKey: "not a key" })).rejects.toMatchObject({
      code: "TLS_KEY_INVALID",
    });
    await mkdir(join(mnt, "etc/pki"), { recursive: true });
    await symlink("/tmp", join(mnt, "etc/pki/libvirt"));
    await expect(configureHost(mnt, tls())).rejects.toMatchObject({ code: "IMAGE_UNSAFE_PATH" });
  });

  it("writes only the network drop-ins when there is no TLS material", async () => {
    await configureHost(mnt, null);
    await expect(lstat(join(mnt, "etc/libvirt/libvirtd.conf"))).rejects.toThrow();
    expect(await mode("etc/sysctl.d/60-weft-forward.conf")).toBe(0o644);
  });

  it("refuses a client DN that would break out of the list", () => {
    expect(() => libvirtdConf(['O=Weft,CN=x"]\nlisten_tcp = 1'])).toThrow(/bad client DN/);
  });
});

describe("guest nftables table", () => {
  const table = [
    "table ip weft {}",
    "delete table ip weft",
    "table ip weft {",
    "  chain prerouting {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    "    ip daddr 10.79.0.1 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.78.0.2, 1 : 10.78.0.3 }",
    "  }",
    "}",
    "",
  ].join("\n");

  it("accepts the controller's table", () => {
    expect(() => checkNftScript(table)).not.toThrow();
  });

  it.each([
    ["another table flushed", table.replace("table ip weft {}", "flush ruleset")],
    ["a second command after the table", `${table}delete table inet filter\n`],
    ["an include", table.replace("  chain prerouting {", '  include "/etc/shadow"\n  chain prerouting {')],
    ["an unclosed table", table.replace(/}\n$/, "\n")],
  ])("refuses %s", (_what, script) => {
    expect(() => checkNftScript(script)).toThrow(/refused nftables script/);
  });

  it("renders the guest network as the controller does (open forwarding, no DHCP)", () => {
    const xml = networkXml({ name: "weft-guests", bridge: "weftbr0", gateway: "10.78.0.1", prefix: 16 });
    expect(xml).toContain("<forward mode='open'/>");
    expect(xml).toContain("<ip address='10.78.0.1' prefix='16'/>");
    expect(xml).not.toContain("<dhcp");
  });
});
