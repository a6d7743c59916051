// What the guest service needs from a host, and the implementation that performs it on the
// machine it runs on (LocalHostDriver). The remote form, for a controller that reaches a host's
// libvirt over TLS, is in remote-driver.ts.
//
// Layout of a host's guest directory (stateDir, /var/lib/weft/guests by default):
//   images/<sha256>.qcow2    base images, read-only, verified; shared by every overlay
//   overlays/<guest>.qcow2   one qcow2 overlay per guest (backing file: its base)
//   config/<guest>.iso       config drive (ISO 9660, label cidata)
//   console/<guest>.log      serial console
//   weft.nft                 the nftables table last applied (rendered from the store)
//
// Domains are named `weft-<guest>`; a cleanup pass only ever touches domains with that prefix.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { Hypervisor, DomainState, type Domain } from "@unraid/libvirt";
import { WeftError, conflict } from "../errors.js";
import type { Logger } from "../log.js";
import { renderNetworkXml } from "./domain-xml.js";
import type { Exec } from "./exec.js";
import { renderNftTable, type VipRule } from "./nft.js";
import { checkBaseInfo, checkOverlayInfo, parseQemuImgInfo, type QemuImgInfo } from "./qemu-img.js";

export interface BaseImageRef {
  name: string;
  sha256: string;
  size: number;
}

export interface ConfigDriveData {
  name: string;
  dip: string;
  prefix: number;
  gateway: string;
  role: string | null;
  vip: string | null;
}

export interface GuestPaths {
  overlay: string;
  configDrive: string;
  console: string;
}

export interface HostCapabilities {
  /** Whether libvirt's <bandwidth> can be enforced (tc htb/sfq/ingress usable). */
  bandwidth: boolean;
  bandwidthReason: string;
  /**
   * Whether libvirt may put <memtune><hard_limit> in the domain: libvirt 9 also raises the
   * QEMU process's RLIMIT_MEMLOCK to the hard limit, which needs CAP_SYS_RESOURCE. Without it
   * the limit is applied to the running domain's cgroup instead (virsh memtune --live).
   */
  memlock: boolean;
  memlockReason: string;
}

export type DomainRunState = "running" | "paused" | "shutoff" | "crashed" | "other" | "absent";

export interface HostInventory {
  /** Guest names with a `weft-` domain defined. */
  domains: string[];
  /** Guest names with an overlay file. */
  overlays: string[];
}

export interface HostDriver {
  /** libvirt network guests attach to. */
  readonly network: string;
  /** Paths a guest's files have on the host (used in the domain XML). */
  paths(guest: string): GuestPaths;
  capabilities(): Promise<HostCapabilities>;
  /** The isolated guest network, defined and active. Idempotent. */
  networkEnsure(): Promise<void>;
  /** The base image in the host's cache, downloaded and verified once; returns its path. */
  ensureBaseImage(image: BaseImageRef): Promise<string>;
  /** A qcow2 overlay of `diskBytes` on the cached base; returns its path. */
  createOverlay(guest: string, image: BaseImageRef, diskBytes: number): Promise<string>;
  writeConfigDrive(data: ConfigDriveData): Promise<string>;
  /** Defines and starts the domain; a live hard memory limit is applied after start if given. */
  defineAndStart(guest: string, xml: string, opts?: { liveHardLimitKiB?: number }): Promise<void>;
  domainState(guest: string): Promise<DomainRunState>;
  /** Removes the domain, overlay, config drive and console log. Never the base. Idempotent. */
  destroy(guest: string): Promise<void>;
  /** Removes a cached base; refused while an overlay is backed by it. */
  removeBase(image: BaseImageRef): Promise<void>;
  /** Replaces the host's whole VIP table: each VIP's ports balanced across its DIPs. */
  setVips(rules: VipRule[]): Promise<void>;
  inventory(): Promise<HostInventory>;
  close(): Promise<void>;
}

export const DOMAIN_PREFIX = "weft-";
export const domainName = (guest: string) => `${DOMAIN_PREFIX}${guest}`;

/** Where base images come from: the controller's /boot/images/<name>, or a test's files. */
export interface ImageSource {
  open(image: BaseImageRef): Promise<Readable>;
}

export class HttpImageSource implements ImageSource {
  constructor(
    private readonly controllerUrl: string,
    private readonly fetchFn: typeof fetch = fetch,
  ) {}

  async open(image: BaseImageRef): Promise<Readable> {
    const url = new URL(`/boot/images/${encodeURIComponent(image.name)}`, this.controllerUrl);
    const res = await this.fetchFn(url);
    if (!res.ok || !res.body) {
      throw new WeftError(
        "unavailable",
        "IMAGE_DOWNLOAD_FAILED",
        `GET ${url.href} answered ${res.status} ${res.statusText}`,
      );
    }
    return Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  }
}

export interface GuestNetworkConfig {
  /** libvirt network name. */
  name: string;
  bridge: string;
  gateway: string;
  prefix: number;
  /** CIDR of the guest subnet (masqueraded on the way out). */
  subnet: string;
}

export const DEFAULT_GUEST_NETWORK: GuestNetworkConfig = {
  name: "weft-guests",
  bridge: "weftbr0",
  gateway: "10.78.0.1",
  prefix: 16,
  subnet: "10.78.0.0/16",
};

export interface LocalHostDriverOptions {
  stateDir: string;
  libvirtUri: string;
  network: GuestNetworkConfig;
  images: ImageSource;
  exec: Exec;
  log: Logger;
  /**
   * Network namespace (under /run/netns) the host's guest networking lives in; commands that
   * touch networking (tc, ip, nft) run there. Unset on a real host.
   */
  netns?: string;
  /** Skip the probes and use this answer. */
  capabilities?: HostCapabilities;
  /** /proc/<pid>/status of the process libvirtd runs as (default: this process). */
  statusFile?: string;
}

const SHA256 = /^[0-9a-f]{64}$/;
const GUEST_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;

function checkGuestName(name: string): string {
  if (!GUEST_NAME.test(name))
    throw new WeftError("invalid_request", "GUEST_NAME_INVALID", `bad guest name ${JSON.stringify(name)}`);
  return name;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));
const NO_DOMAIN = /domain not found|no domain with matching/i;
const NOT_RUNNING = /domain is not running/i;

function runState(s: DomainState): DomainRunState {
  switch (s) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
      return "running";
    case DomainState.PAUSED:
      return "paused";
    case DomainState.SHUTOFF:
      return "shutoff";
    case DomainState.CRASHED:
      return "crashed";
    default:
      return "other";
  }
}

/**
 * Builds a guest's config drive: an ISO 9660 image labelled cidata holding weft.json
 * {name, dip, prefix, gateway, role, vip}, and the same facts for cloud-init's NoCloud
 * datasource (meta-data, network-config), so stock cloud images configure themselves too.
 */
export async function buildConfigDrive(exec: Exec, d: ConfigDriveData, outFile: string): Promise<void> {
  checkGuestName(d.name);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-cidata-"));
  try {
    const weft = { name: d.name, dip: d.dip, prefix: d.prefix, gateway: d.gateway, role: d.role, vip: d.vip };
    fs.writeFileSync(path.join(dir, "weft.json"), JSON.stringify(weft, null, 2) + "\n");
    fs.writeFileSync(path.join(dir, "meta-data"), `instance-id: ${d.name}\nlocal-hostname: ${d.name}\n`);
    fs.writeFileSync(
      path.join(dir, "network-config"),
      [
        "version: 2",
        "ethernets:",
        "  eth0:",
        "    match: {name: 'e*'}",
        `    addresses: [${d.dip}/${d.prefix}]`,
        `    routes: [{to: 0.0.0.0/0, via: ${d.gateway}}]`,
        "",
      ].join("\n"),
    );
    fs.writeFileSync(path.join(dir, "user-data"), "#cloud-config\n{}\n");
    await exec("genisoimage", [
      "-quiet",
      "-output",
      outFile,
      "-volid",
      "cidata",
      "-joliet",
      "-rock",
      "-input-charset",
      "utf-8",
      dir,
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Domains through the node-libvirt binding, on any connection URI (a local socket or
 * qemu+tls to a host). Shared by the local and remote drivers.
 */
export class LibvirtDomains {
  #hv: Promise<Hypervisor> | undefined;

  constructor(
    readonly uri: string,
    private readonly virsh: (args: string[]) => Promise<unknown>,
  ) {}

  #hypervisor(): Promise<Hypervisor> {
    this.#hv ??= (async () => {
      const hv = new Hypervisor({ uri: this.uri });
      await hv.connectOpen();
      return hv;
    })();
    this.#hv.catch(() => (this.#hv = undefined));
    return this.#hv;
  }

  async lookup(guest: string): Promise<Domain | null> {
    const hv = await this.#hypervisor();
    try {
      return await hv.domainLookupByName(domainName(guest));
    } catch (err) {
      if (NO_DOMAIN.test(messageOf(err))) return null;
      throw err;
    }
  }

  async defineAndStart(guest: string, xml: string, opts: { liveHardLimitKiB?: number } = {}): Promise<void> {
    checkGuestName(guest);
    const hv = await this.#hypervisor();
    const dom = await hv.domainDefineXML(xml);
    try {
      await dom.create();
      if (opts.liveHardLimitKiB !== undefined) {
        // The binding has no memtune: virsh, on the same connection URI.
        await this.virsh([
          "memtune",
          domainName(guest),
          "--hard-limit",
          String(opts.liveHardLimitKiB),
          "--live",
        ]);
      }
    } catch (err) {
      await dom.destroy().catch(() => undefined);
      await dom.undefine().catch(() => undefined);
      throw new WeftError("unavailable", "DOMAIN_START_FAILED", `starting ${guest}: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }

  async state(guest: string): Promise<DomainRunState> {
    const dom = await this.lookup(guest);
    if (!dom) return "absent";
    return runState((await dom.getInfo()).state);
  }

  /** Stops and undefines the guest's domain if there is one. */
  async remove(guest: string): Promise<void> {
    const dom = await this.lookup(guest);
    if (!dom) return;
    try {
      await dom.destroy();
    } catch (err) {
      if (!NOT_RUNNING.test(messageOf(err)) && !NO_DOMAIN.test(messageOf(err))) throw err;
    }
    try {
      await dom.undefine();
    } catch (err) {
      if (!NO_DOMAIN.test(messageOf(err))) throw err;
    }
  }

  /** Guest names of the `weft-` domains. */
  async guests(): Promise<string[]> {
    const hv = await this.#hypervisor();
    const names = await Promise.all((await hv.connectListAllDomains()).map((d) => d.getName()));
    return names.filter((n) => n.startsWith(DOMAIN_PREFIX)).map((n) => n.slice(DOMAIN_PREFIX.length));
  }

  async close(): Promise<void> {
    const hv = this.#hv;
    this.#hv = undefined;
    if (hv) await (await hv.catch(() => undefined))?.connectClose().catch(() => undefined);
  }
}

export class LocalHostDriver implements HostDriver {
  readonly #o: LocalHostDriverOptions;
  readonly #downloads = new Map<string, Promise<string>>();
  readonly #domains: LibvirtDomains;
  #networkReady: Promise<void> | undefined;
  /** Bases checked with qemu-img since this driver started (the cache is read-only). */
  readonly #verified = new Set<string>();
  #caps: Promise<HostCapabilities> | undefined;

  constructor(options: LocalHostDriverOptions) {
    this.#o = options;
    this.#domains = new LibvirtDomains(options.libvirtUri, (args) => this.#virsh(args));
    for (const d of ["images", "overlays", "config", "console"])
      fs.mkdirSync(path.join(options.stateDir, d), { recursive: true, mode: 0o750 });
  }

  get network(): string {
    return this.#o.network.name;
  }

  get imagesDir(): string {
    return path.join(this.#o.stateDir, "images");
  }

  basePath(image: BaseImageRef): string {
    if (!SHA256.test(image.sha256))
      throw new WeftError("invalid_request", "IMAGE_SHA256_INVALID", `image ${image.name} has a bad sha256`);
    return path.join(this.imagesDir, `${image.sha256}.qcow2`);
  }

  paths(guest: string): GuestPaths {
    checkGuestName(guest);
    const d = this.#o.stateDir;
    return {
      overlay: path.join(d, "overlays", `${guest}.qcow2`),
      configDrive: path.join(d, "config", `${guest}.iso`),
      console: path.join(d, "console", `${guest}.log`),
    };
  }

  /** A network command, inside the configured namespace when there is one. */
  #net(cmd: string, args: string[], allowFailure = false) {
    const ns = this.#o.netns;
    return ns
      ? this.#o.exec("nsenter", [`--net=/run/netns/${ns}`, cmd, ...args], { allowFailure })
      : this.#o.exec(cmd, args, { allowFailure });
  }

  #virsh(args: string[], allowFailure = false) {
    return this.#o.exec("virsh", ["-c", this.#o.libvirtUri, "-q", ...args], { allowFailure });
  }

  capabilities(): Promise<HostCapabilities> {
    if (this.#o.capabilities) return Promise.resolve(this.#o.capabilities);
    this.#caps ??= (async () => {
      const bw = await this.#probeBandwidth();
      const ml = this.#probeMemlock();
      return { ...bw, ...ml };
    })();
    return this.#caps;
  }

  /** CAP_SYS_RESOURCE (bit 24) in the effective set, needed to raise RLIMIT_MEMLOCK. */
  #probeMemlock(): { memlock: boolean; memlockReason: string } {
    try {
      const status = fs.readFileSync(this.#o.statusFile ?? "/proc/self/status", "utf8");
      const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
      if (hex && (BigInt(`0x${hex}`) >> 24n) & 1n)
        return { memlock: true, memlockReason: "CAP_SYS_RESOURCE held" };
      const reason = "no CAP_SYS_RESOURCE: libvirt cannot raise RLIMIT_MEMLOCK to <hard_limit>";
      this.#o.log.warn(
        { reason },
        "memory hard limits are applied to running domains (virsh memtune --live)",
      );
      return { memlock: false, memlockReason: reason };
    } catch (err) {
      return {
        memlock: true,
        memlockReason: `capabilities unreadable (${messageOf(err)}); assuming libvirt may`,
      };
    }
  }

  /**
   * libvirt's <bandwidth> builds an htb tree with sfq leaves and an ingress policer. Try the
   * same qdiscs on a throwaway link; any refusal means bandwidth cannot be enforced.
   */
  async #probeBandwidth(): Promise<Pick<HostCapabilities, "bandwidth" | "bandwidthReason">> {
    // A veth pair rather than a dummy link: some kernels are built without the dummy driver.
    const dev = "weftbwp0";
    await this.#net("ip", ["link", "del", dev], true);
    const steps: string[][] = [
      ["ip", "link", "add", dev, "type", "veth", "peer", "name", "weftbwp1"],
      ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
      ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "1mbit"],
      ["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "2:", "sfq", "perturb", "10"],
      ["tc", "qdisc", "add", "dev", dev, "ingress"],
    ];
    try {
      for (const [cmd, ...args] of steps) {
        const r = await this.#net(cmd!, args, true);
        if (r.exitCode !== 0) {
          const reason = `\`${[cmd, ...args].join(" ")}\` failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`;
          this.#o.log.warn(
            { reason },
            "guest bandwidth caps cannot be enforced on this host; <bandwidth> omitted",
          );
          return { bandwidth: false, bandwidthReason: reason };
        }
      }
      return { bandwidth: true, bandwidthReason: "htb, sfq and ingress qdiscs work" };
    } finally {
      await this.#net("ip", ["link", "del", dev], true);
    }
  }

  /** Checked once per driver (concurrent creates share the check); retried after a failure. */
  networkEnsure(): Promise<void> {
    this.#networkReady ??= this.#networkEnsure();
    this.#networkReady.catch(() => (this.#networkReady = undefined));
    return this.#networkReady;
  }

  async #networkEnsure(): Promise<void> {
    const n = this.#o.network;
    const info = await this.#virsh(["net-info", n.name], true);
    if (info.exitCode !== 0) {
      const file = path.join(
        os.tmpdir(),
        `weft-net-${process.pid}-${crypto.randomBytes(4).toString("hex")}.xml`,
      );
      fs.writeFileSync(file, renderNetworkXml(n));
      try {
        await this.#virsh(["net-define", file]);
      } finally {
        fs.rmSync(file, { force: true });
      }
    }
    const active = await this.#virsh(["net-info", n.name]);
    if (!/^Active:\s+yes/m.test(active.stdout)) await this.#virsh(["net-start", n.name]);
    await this.#virsh(["net-autostart", n.name], true);
  }

  async #qemuImgInfo(file: string): Promise<QemuImgInfo> {
    // -U: read even while a running QEMU holds the image's lock. -f qcow2: never probe.
    const r = await this.#o.exec("qemu-img", ["info", "-U", "-f", "qcow2", "--output=json", file]);
    return parseQemuImgInfo(r.stdout, file);
  }

  async ensureBaseImage(image: BaseImageRef): Promise<string> {
    const dest = this.basePath(image);
    const inflight = this.#downloads.get(image.sha256);
    if (inflight) return inflight;
    const p = this.#download(image, dest).finally(() => this.#downloads.delete(image.sha256));
    this.#downloads.set(image.sha256, p);
    return p;
  }

  async #download(image: BaseImageRef, dest: string): Promise<string> {
    if (fs.existsSync(dest)) {
      await this.#checkBase(dest);
      return dest;
    }
    const t0 = Date.now();
    const tmp = `${dest}.${process.pid}.part`;
    const hash = crypto.createHash("sha256");
    let size = 0;
    try {
      await pipeline(
        await this.#o.images.open(image),
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            size += c.length;
            yield c;
          }
        },
        fs.createWriteStream(tmp, { mode: 0o600 }),
      );
      const digest = hash.digest("hex");
      if (digest !== image.sha256) {
        throw new WeftError(
          "unavailable",
          "IMAGE_CHECKSUM_MISMATCH",
          `image ${image.name}: downloaded sha256 ${digest}, expected ${image.sha256}`,
        );
      }
      if (size !== image.size) {
        throw new WeftError(
          "unavailable",
          "IMAGE_SIZE_MISMATCH",
          `image ${image.name}: downloaded ${size} bytes, expected ${image.size}`,
        );
      }
      checkBaseInfo(await this.#qemuImgInfo(tmp), image.name);
      fs.chmodSync(tmp, 0o444);
      fs.renameSync(tmp, dest);
      this.#verified.add(dest);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    this.#o.log.info({ image: image.name, bytes: size, ms: Date.now() - t0 }, "base image cached");
    return dest;
  }

  async #checkBase(base: string): Promise<void> {
    if (this.#verified.has(base)) return;
    checkBaseInfo(await this.#qemuImgInfo(base), base);
    this.#verified.add(base);
  }

  async createOverlay(guest: string, image: BaseImageRef, diskBytes: number): Promise<string> {
    const base = this.basePath(image);
    await this.#checkBase(base);
    const { overlay } = this.paths(guest);
    fs.rmSync(overlay, { force: true }); // a leftover of a failed attempt
    await this.#o.exec("qemu-img", [
      "create",
      "-q",
      "-f",
      "qcow2",
      "-b",
      base,
      "-F",
      "qcow2",
      overlay,
      String(diskBytes),
    ]);
    fs.chmodSync(overlay, 0o600);
    checkOverlayInfo(await this.#qemuImgInfo(overlay), overlay, base, this.imagesDir);
    return overlay;
  }

  async writeConfigDrive(d: ConfigDriveData): Promise<string> {
    const { configDrive } = this.paths(d.name);
    const tmp = `${configDrive}.part`;
    await buildConfigDrive(this.#o.exec, d, tmp);
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, configDrive);
    return configDrive;
  }

  defineAndStart(guest: string, xml: string, opts: { liveHardLimitKiB?: number } = {}): Promise<void> {
    return this.#domains.defineAndStart(guest, xml, opts);
  }

  domainState(guest: string): Promise<DomainRunState> {
    return this.#domains.state(guest);
  }

  async destroy(guest: string): Promise<void> {
    await this.#domains.remove(guest);
    const p = this.paths(guest);
    for (const f of [p.overlay, p.configDrive, p.console]) fs.rmSync(f, { force: true });
  }

  async removeBase(image: BaseImageRef): Promise<void> {
    const base = this.basePath(image);
    const users: string[] = [];
    const dir = path.join(this.#o.stateDir, "overlays");
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith(".qcow2"))) {
      const info = await this.#qemuImgInfo(path.join(dir, f));
      const backing = info["full-backing-filename"] ?? info["backing-filename"];
      if (backing && path.resolve(dir, backing) === base) users.push(f.replace(/\.qcow2$/, ""));
    }
    if (users.length) {
      throw conflict("IMAGE_IN_USE", `base image ${image.name} is used by ${users.join(", ")}`, {
        guests: users,
      });
    }
    fs.rmSync(base, { force: true });
    this.#verified.delete(base);
  }

  async setVips(rules: VipRule[]): Promise<void> {
    const script = renderNftTable(this.#o.network.subnet, rules); // validates every address
    const file = path.join(this.#o.stateDir, "weft.nft");
    fs.writeFileSync(file, script);
    await this.#net("nft", ["-f", file]);
  }

  async inventory(): Promise<HostInventory> {
    const domains = await this.#domains.guests();
    const overlays = fs
      .readdirSync(path.join(this.#o.stateDir, "overlays"))
      .filter((f) => f.endsWith(".qcow2"))
      .map((f) => f.slice(0, -".qcow2".length));
    return { domains, overlays };
  }

  close(): Promise<void> {
    return this.#domains.close();
  }
}
