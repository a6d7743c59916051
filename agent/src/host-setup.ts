// What install-host writes into the new root besides the agent's identity, so that the
// controller can reach the host's libvirtd over TLS once it boots:
//
//   /etc/pki/CA/cacert.pem                   the controller's CA (0644)
//   /etc/pki/libvirt/servercert.pem          the host's server certificate (0644)
//   /etc/pki/libvirt/private/serverkey.pem   its key (0600, directory 0700)
//   /etc/libvirt/libvirtd.conf               TLS only, client certificates checked, DNs listed
//   libvirtd-tls.socket enabled, libvirtd-tcp.socket masked: port 16514 listens, 16509 never
//   a networkd drop-in sending the MAC as DHCP client identifier, as the maintenance OS's
//   udhcpc does, so the host keeps the lease (and address) its certificate names
//   net.ipv4.ip_forward = 1 (VIP DNAT and guest egress go through the host)
import { chmod, lstat, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { InstallHostParams } from "@weft/wire";
import { AgentError } from "./errors.js";

export type HostTls = NonNullable<InstallHostParams["tls"]>;

const PEM_CERT = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/;
const PEM_KEY =
  /^-----BEGIN (RSA |EC )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END (RSA |EC )?PRIVATE KEY-----\r?\n?$/;
const DN = /^[A-Za-z]+=[^"\\\n]+(,[A-Za-z]+=[^"\\\n]+)*$/;

const unsafe = (rel: string) =>
  new AgentError("integrity", "IMAGE_UNSAFE_PATH", `/${rel} in the image is not a plain directory or file`);

/** Files below a mounted new root; never follows a symlink the image placed on the way. */
export class RootFs {
  constructor(readonly mnt: string) {}

  async dir(rel: string, mode?: number): Promise<string> {
    let path = this.mnt;
    for (const part of rel.split("/").filter(Boolean)) {
      path = join(path, part);
      const st = await lstat(path).catch(() => null);
      if (st === null) await mkdir(path, { mode: 0o755 });
      else if (!st.isDirectory()) throw unsafe(path.slice(this.mnt.length + 1));
    }
    if (mode !== undefined) await chmod(path, mode);
    return path;
  }

  async write(dir: string, name: string, data: string, mode: number): Promise<void> {
    const path = join(await this.dir(dir), name);
    const st = await lstat(path).catch(() => null);
    if (st && !st.isFile()) throw unsafe(`${dir}/${name}`);
    await writeFile(path, data, { mode });
    await chmod(path, mode);
  }

  /** `dir/name` becomes a symlink to `target`, replacing a link or file already there. */
  async link(dir: string, name: string, target: string): Promise<void> {
    const path = join(await this.dir(dir), name);
    const st = await lstat(path).catch(() => null);
    if (st?.isDirectory()) throw unsafe(`${dir}/${name}`);
    if (st) await rm(path);
    await symlink(target, path);
  }
}

/** libvirtd.conf for a TLS-only daemon that admits only the given client DNs. */
export function libvirtdConf(allowedClients: readonly string[]): string {
  for (const dn of allowedClients) {
    if (!DN.test(dn))
      throw new AgentError("invalid_request", "TLS_DN_INVALID", `bad client DN ${JSON.stringify(dn)}`);
  }
  return [
    "# Written by the weft agent at install time: libvirtd over TLS only, for the controller.",
    "listen_tls = 1",
    "listen_tcp = 0",
    "tls_no_verify_certificate = 0",
    `tls_allowed_dn_list = [${allowedClients.map((d) => `"${d}"`).join(", ")}]`,
    "",
  ].join("\n");
}

export const CLIENT_ID_DROPIN = "[DHCPv4]\nClientIdentifier=mac\n";

export async function writeHostTls(root: RootFs, tls: HostTls): Promise<void> {
  if (!PEM_CERT.test(`${tls.caCert.trim()}\n`) || !PEM_CERT.test(`${tls.serverCert.trim()}\n`))
    throw new AgentError(
      "invalid_request",
      "TLS_CERT_INVALID",
      "the CA or the server certificate is not one PEM certificate",
    );
  if (!PEM_KEY.test(`${tls.serverKey.trim()}\n`))
    throw new AgentError("invalid_request", "TLS_KEY_INVALID", "the server key is not one PEM private key");
  const conf = libvirtdConf(tls.allowedClients);
  await root.write("etc/pki/CA", "cacert.pem", tls.caCert, 0o644);
  await root.write("etc/pki/libvirt", "servercert.pem", tls.serverCert, 0o644);
  await root.dir("etc/pki/libvirt/private", 0o700);
  await root.write("etc/pki/libvirt/private", "serverkey.pem", tls.serverKey, 0o600);
  await root.write("etc/libvirt", "libvirtd.conf", conf, 0o644);
  await root.link(
    "etc/systemd/system/sockets.target.wants",
    "libvirtd-tls.socket",
    "/lib/systemd/system/libvirtd-tls.socket",
  );
  await root.link("etc/systemd/system", "libvirtd-tcp.socket", "/dev/null");
}

export async function writeHostNetwork(root: RootFs): Promise<void> {
  await root.write(
    "etc/systemd/network/20-weft-dhcp.network.d",
    "10-client-id.conf",
    CLIENT_ID_DROPIN,
    0o644,
  );
  await root.write("etc/sysctl.d", "60-weft-forward.conf", "net.ipv4.ip_forward = 1\n", 0o644);
}

/** Everything above, in the new root mounted at `mnt`. */
export async function configureHost(mnt: string, tls: HostTls | null): Promise<void> {
  const root = new RootFs(mnt);
  await writeHostNetwork(root);
  if (tls) await writeHostTls(root, tls);
}
