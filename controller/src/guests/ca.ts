// The controller's small CA for libvirt over TLS (qemu+tls://HOST/system). openssl does the
// cryptography; this module decides names, lifetimes and file modes. Layout under the
// controller's data directory (default <dataDir>/pki):
//
//   ca/cakey.pem, ca/cacert.pem           the CA (key 0600, directory 0700)
//   client/clientkey.pem, clientcert.pem  the controller's client identity, CN=weft-controller,
//   client/cacert.pem                     and a copy of the CA: libvirt's pkipath= layout
//   hosts/<name>/serverkey.pem, servercert.pem   one server identity per host
//
// A host then holds (libvirt's default paths):
//   /etc/pki/CA/cacert.pem                      the CA certificate (0644)
//   /etc/pki/libvirt/servercert.pem             its server certificate (0644)
//   /etc/pki/libvirt/private/serverkey.pem      its key (0600, root)
// and libvirtd.conf: listen_tls = 1, listen_tcp = 0, tls_no_verify_certificate = 0,
// tls_allowed_dn_list = ["O=Weft,CN=weft-controller"] (libvirt 9 writes the DN in this order),
// started with --listen (or the libvirtd-tls.socket unit); TCP port 16514. No unauthenticated
// TCP socket. HOSTS.md in this folder lists everything a host needs.
//
// Keys are RSA: libvirt insists on the keyEncipherment usage that RSA certificates carry.
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { WeftError, invalid } from "../errors.js";
import type { Exec } from "./exec.js";

export const CLIENT_CN = "weft-controller";
export const CA_ORG = "Weft";

const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface IssuedServer {
  key: string;
  cert: string;
  caCert: string;
  keyFile: string;
  certFile: string;
}

export class HostCa {
  constructor(
    readonly dir: string,
    private readonly exec: Exec,
    private readonly opts: { caDays?: number; certDays?: number; bits?: number } = {},
  ) {}

  get caCertFile(): string {
    return path.join(this.dir, "ca", "cacert.pem");
  }
  get caKeyFile(): string {
    return path.join(this.dir, "ca", "cakey.pem");
  }
  /** The directory to pass as pkipath= in a qemu+tls URI. */
  get clientDir(): string {
    return path.join(this.dir, "client");
  }

  /** The libvirt URI the controller uses for a host, with its client certificate. */
  libvirtUri(address: string): string {
    const host = net.isIPv6(address) ? `[${address}]` : address;
    if (!net.isIP(address) && !HOST_NAME.test(address))
      throw invalid("HOST_ADDRESS_INVALID", `bad address ${address}`);
    return `qemu+tls://${host}/system?pkipath=${encodeURIComponent(this.clientDir)}`;
  }

  #mkdir(d: string): void {
    fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    fs.chmodSync(d, 0o700);
  }

  /** Creates the CA unless it exists. */
  async ensureCa(): Promise<void> {
    if (fs.existsSync(this.caCertFile) && fs.existsSync(this.caKeyFile)) return;
    this.#mkdir(path.dirname(this.caKeyFile));
    await this.exec("openssl", [
      "req",
      "-x509",
      "-new",
      "-newkey",
      `rsa:${this.opts.bits ?? 3072}`,
      "-nodes",
      "-sha256",
      "-keyout",
      this.caKeyFile,
      "-out",
      this.caCertFile,
      "-days",
      String(this.opts.caDays ?? 3650),
      "-subj",
      `/O=${CA_ORG}/CN=Weft host CA`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    fs.chmodSync(this.caKeyFile, 0o600);
  }

  /** A key and a certificate signed by the CA, with the given extensions. */
  async #issue(
    dir: string,
    base: string,
    cn: string,
    ext: string[],
  ): Promise<{ keyFile: string; certFile: string }> {
    await this.ensureCa();
    this.#mkdir(dir);
    const keyFile = path.join(dir, `${base}key.pem`);
    const certFile = path.join(dir, `${base}cert.pem`);
    const csr = path.join(dir, `${base}.csr`);
    const extFile = path.join(dir, `${base}.ext`);
    try {
      await this.exec("openssl", [
        "req",
        "-new",
        "-newkey",
        `rsa:${this.opts.bits ?? 3072}`,
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        csr,
        "-subj",
        `/O=${CA_ORG}/CN=${cn}`,
      ]);
      fs.chmodSync(keyFile, 0o600);
      fs.writeFileSync(extFile, ext.join("\n") + "\n", { mode: 0o600 });
      await this.exec("openssl", [
        "x509",
        "-req",
        "-sha256",
        "-in",
        csr,
        "-CA",
        this.caCertFile,
        "-CAkey",
        this.caKeyFile,
        "-set_serial",
        `0x${crypto.randomBytes(16).toString("hex")}`,
        "-days",
        String(this.opts.certDays ?? 825),
        "-extfile",
        extFile,
        "-out",
        certFile,
      ]);
    } finally {
      fs.rmSync(csr, { force: true });
      fs.rmSync(extFile, { force: true });
    }
    return { keyFile, certFile };
  }

  /**
   * A server certificate for a host: its name as CN and DNS SAN, each address as an IP SAN.
   * Returns the PEMs the host must install (see the top of this file).
   */
  async issueServer(host: { name: string; addresses: string[]; dnsNames?: string[] }): Promise<IssuedServer> {
    if (!HOST_NAME.test(host.name))
      throw invalid("HOST_NAME_INVALID", `bad host name ${JSON.stringify(host.name)}`);
    for (const a of host.addresses)
      if (!net.isIP(a)) throw invalid("HOST_ADDRESS_INVALID", `not an IP address: ${JSON.stringify(a)}`);
    for (const d of host.dnsNames ?? [])
      if (!HOST_NAME.test(d)) throw invalid("HOST_NAME_INVALID", `bad DNS name ${JSON.stringify(d)}`);
    const sans = [
      ...[...new Set([host.name, ...(host.dnsNames ?? [])])].map((d) => `DNS:${d}`),
      ...host.addresses.map((a) => `IP:${a}`),
    ];
    const { keyFile, certFile } = await this.#issue(
      path.join(this.dir, "hosts", host.name),
      "server",
      host.name,
      [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        `subjectAltName=${sans.join(",")}`,
      ],
    );
    return {
      key: fs.readFileSync(keyFile, "utf8"),
      cert: fs.readFileSync(certFile, "utf8"),
      caCert: fs.readFileSync(this.caCertFile, "utf8"),
      keyFile,
      certFile,
    };
  }

  /** The controller's client certificate (and the CA beside it, for pkipath=). */
  async ensureClient(): Promise<{ keyFile: string; certFile: string }> {
    const keyFile = path.join(this.clientDir, "clientkey.pem");
    const certFile = path.join(this.clientDir, "clientcert.pem");
    if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
      await this.#issue(this.clientDir, "client", CLIENT_CN, [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=clientAuth",
      ]);
    }
    fs.copyFileSync(this.caCertFile, path.join(this.clientDir, "cacert.pem"));
    return { keyFile, certFile };
  }

  /** Checks a certificate against the CA for a purpose (sslserver | sslclient). */
  async verify(certFile: string, purpose: "sslserver" | "sslclient"): Promise<void> {
    const r = await this.exec(
      "openssl",
      ["verify", "-purpose", purpose, "-CAfile", this.caCertFile, certFile],
      {
        allowFailure: true,
      },
    );
    if (r.exitCode !== 0)
      throw new WeftError(
        "invalid_request",
        "CERT_INVALID",
        `${certFile}: ${r.stdout.trim()} ${r.stderr.trim()}`,
      );
  }
}
