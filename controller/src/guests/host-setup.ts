// The controller's side of making an installed host usable for guests:
//
// - at install-host dispatch, the host's server certificate for libvirtd over TLS (CN and DNS
//   SAN its name, IP SAN the address it will have) with the CA and the client DN libvirtd must
//   admit. The key leaves the controller in the command only: its copy is removed at once.
// - at registration, a check that libvirtd answers over TLS with the controller's client
//   certificate (qemu+tls://ADDRESS/system), and a first guest-network command so that the
//   guest network exists before any guest is placed there.
// - whenever a host's VIP rules change, a guest-network command carrying the rendered
//   nftables table; the caller waits for the agent's report (it comes with a heartbeat).
import fs from "node:fs";
import type { GuestNetwork, InstallHostParams } from "@weft/wire";
import { WeftError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import { CA_ORG, CLIENT_CN, type HostCa } from "./ca.js";
import type { Exec } from "./exec.js";

/** The DN libvirt 9 reports for the controller's client certificate. */
export const CLIENT_DN = `O=${CA_ORG},CN=${CLIENT_CN}`;

export const GUEST_NETWORK_JOB = "guest-network";

export interface LibvirtProbe {
  uri: string;
  ok: boolean;
  version: string | null;
  error: string | null;
  ms: number;
}

export interface HostSetupOptions {
  db: Db;
  ca: HostCa;
  exec: Exec;
  log: Logger;
  network: GuestNetwork;
  /** How long a TLS check keeps trying (libvirtd may still be starting). */
  probeTimeoutMs?: number;
  /** How long a VIP change waits for the host agent's report. */
  applyTimeoutMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class HostSetup {
  constructor(private readonly o: HostSetupOptions) {}

  /** TLS material for install-host: issued now, the controller keeps no copy of the key. */
  async tlsFor(name: string, addresses: string[]): Promise<NonNullable<InstallHostParams["tls"]>> {
    await this.o.ca.ensureClient();
    const s = await this.o.ca.issueServer({ name, addresses });
    fs.rmSync(s.keyFile, { force: true });
    return { caCert: s.caCert, serverCert: s.cert, serverKey: s.key, allowedClients: [CLIENT_DN] };
  }

  /** Whether the host's libvirtd answers over TLS with the controller's client certificate. */
  async probe(address: string): Promise<LibvirtProbe> {
    const t0 = Date.now();
    const uri = this.o.ca.libvirtUri(address);
    await this.o.ca.ensureClient();
    const deadline = t0 + (this.o.probeTimeoutMs ?? 20_000);
    let error = "";
    for (;;) {
      const r = await this.o.exec("virsh", ["-c", uri, "-q", "version", "--daemon"], {
        allowFailure: true,
        timeoutMs: 15_000,
      });
      const version = /Running against daemon:\s*(\S+)/.exec(r.stdout)?.[1] ?? null;
      if (r.exitCode === 0 && version) return { uri, ok: true, version, error: null, ms: Date.now() - t0 };
      error = (r.stderr || r.stdout).trim().slice(-500) || `virsh exited ${r.exitCode}`;
      if (Date.now() > deadline) return { uri, ok: false, version: null, error, ms: Date.now() - t0 };
      await (this.o.sleep ?? defaultSleep)(2000);
    }
  }

  /**
   * Queues a guest-network command for a host. Commands are handed out and applied in the
   * order they were queued, so the newest table is the one that stays.
   */
  async queue(machineId: string, nft: string | null): Promise<string> {
    const job = await this.o.db.job.create({
      data: { kind: GUEST_NETWORK_JOB, machineId, params: { network: this.o.network, nft } },
    });
    return job.id;
  }

  /** Applies a rendered `ip weft` table on a host through its agent; resolves when it reports. */
  async applyNft(machineId: string, script: string): Promise<void> {
    const id = await this.queue(machineId, script);
    const deadline = Date.now() + (this.o.applyTimeoutMs ?? 90_000);
    for (;;) {
      const job = await this.o.db.job.findUnique({ where: { id } });
      if (!job)
        throw new WeftError("unavailable", "HOST_COMMAND_LOST", `guest-network command ${id} vanished`);
      if (job.state === "succeeded") return;
      if (job.state === "failed" || job.state === "cancelled")
        throw new WeftError(
          "unavailable",
          "VIP_RULES_NOT_APPLIED",
          `the host agent did not apply the nftables table: ${job.error ?? job.state}`,
        );
      if (Date.now() > deadline)
        throw new WeftError(
          "unavailable",
          "HOST_AGENT_SILENT",
          `the host agent did not report command ${id} within ${Math.round((this.o.applyTimeoutMs ?? 90_000) / 1000)} s`,
        );
      await (this.o.sleep ?? defaultSleep)(250);
    }
  }
}
