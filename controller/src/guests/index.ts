// The guest subsystem as the daemon builds it: the CA, IPAM, one remote driver per host
// (libvirt over TLS with the controller's client certificate) and the guest service, plus the
// periodic cleanup pass.
import path from "node:path";
import { WeftError } from "../errors.js";
import type { Images } from "../images/images.js";
import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import type { Store } from "../store/store.js";
import { HostCa } from "./ca.js";
import { createExec, type Exec } from "./exec.js";
import { DEFAULT_GUEST_NETWORK, type HostCapabilities, type HostDriver } from "./host-driver.js";
import { DEFAULT_IPAM, Ipam, type IpamConfig } from "./ipam.js";
import { HostSetup } from "./host-setup.js";
import { RemoteHostDriver } from "./remote-driver.js";
import { GuestService, type HostRow } from "./service.js";

export interface GuestSubsystemOptions {
  db: Db;
  store: Store;
  images: Images;
  log: Logger;
  /** The controller's data directory; the CA lives in <dataDir>/pki. */
  dataDir: string;
  ipam?: IpamConfig;
  /** The guest directory on hosts. */
  hostDir?: string;
  /** What hosts can enforce until their agents report it (a stock Debian kernel can). */
  hostCapabilities?: HostCapabilities;
  /** Applies a rendered nftables table on a host, through its agent. */
  applyNft?: (host: HostRow, script: string) => Promise<void>;
  exec?: Exec;
  /** Overrides the driver for a host (tests, a local host). */
  driverFor?: (host: HostRow) => HostDriver;
}

export interface GuestSubsystem {
  service: GuestService;
  ca: HostCa;
  /** Host TLS at install, libvirt checks at registration, guest networking through the agent. */
  hostSetup: HostSetup;
  /** Runs the cleanup pass every `intervalMs` until `signal` aborts. */
  startCleanup(intervalMs: number, signal: AbortSignal): void;
  close(): Promise<void>;
}

export function createGuestSubsystem(o: GuestSubsystemOptions): GuestSubsystem {
  const exec = o.exec ?? createExec(o.log.child({ component: "guests" }));
  const ca = new HostCa(path.join(o.dataDir, "pki"), exec);
  const ipamConfig = o.ipam ?? DEFAULT_IPAM;
  const drivers = new Map<string, { uri: string; driver: HostDriver }>();
  const assumed = o.hostCapabilities ?? {
    bandwidth: true,
    bandwidthReason: "assumed: a stock host kernel has htb, sfq and ingress",
    memlock: true,
    memlockReason: "assumed: libvirtd runs as root with CAP_SYS_RESOURCE",
  };
  const net = DEFAULT_GUEST_NETWORK;
  const hostSetup = new HostSetup({
    db: o.db,
    ca,
    exec,
    log: o.log.child({ component: "host-setup" }),
    network: { name: net.name, bridge: net.bridge, gateway: ipamConfig.gateway, prefix: net.prefix },
  });
  const applyNft =
    o.applyNft ?? ((host: HostRow, script: string) => hostSetup.applyNft(host.machineId, script));
  // What the host's agent found at its last registration; older agents report nothing.
  const capsOf = async (host: HostRow): Promise<HostCapabilities> => {
    if (o.hostCapabilities) return o.hostCapabilities;
    const ev = await o.db.event.findFirst({
      where: { subjectType: "machine", subjectId: host.machineId, toState: "host-ready" },
      orderBy: { id: "desc" },
    });
    const g = (ev?.data as { guests?: HostCapabilities } | null)?.guests;
    return g ?? assumed;
  };
  const remoteFor = (host: HostRow): HostDriver => {
    const uri = host.libvirtUri?.startsWith("qemu+tls://")
      ? host.libvirtUri
      : ca.libvirtUri(host.address ?? host.machine.name ?? host.machineId);
    const prior = drivers.get(host.id);
    if (prior?.uri === uri) return prior.driver;
    void prior?.driver.close();
    const driver = new RemoteHostDriver({
      libvirtUri: uri,
      remoteDir: o.hostDir ?? "/var/lib/weft/guests",
      network: DEFAULT_GUEST_NETWORK.name,
      guestSubnet: ipamConfig.guestSubnet,
      imageFile: async (ref) => {
        const img = await o.images.get(ref.name);
        if (img.sha256 !== ref.sha256)
          throw new WeftError("conflict", "IMAGE_REPLACED", `image ${ref.name} was replaced meanwhile`);
        return o.images.fileOf(img);
      },
      exec,
      log: o.log.child({ host: host.machine.name ?? host.id }),
      capabilities: () => capsOf(host),
      applyNft: (script: string) => applyNft(host, script),
    });
    drivers.set(host.id, { uri, driver });
    return driver;
  };
  const service = new GuestService({
    db: o.db,
    store: o.store,
    log: o.log.child({ component: "guests" }),
    ipam: new Ipam(o.db, ipamConfig),
    driverFor: o.driverFor ?? remoteFor,
  });
  return {
    service,
    ca,
    hostSetup,
    startCleanup(intervalMs, signal) {
      const tick = async () => {
        if (signal.aborted) return;
        try {
          const r = await service.reconcile();
          if (r.errors.length) o.log.warn({ errors: r.errors }, "guest cleanup pass: hosts not reached");
        } catch (err) {
          o.log.error({ err }, "guest cleanup pass failed");
        }
        if (!signal.aborted) setTimeout(() => void tick(), intervalMs).unref();
      };
      void tick();
    },
    async close() {
      await service.settled();
      await Promise.all([...drivers.values()].map((d) => d.driver.close()));
    },
  };
}
