// A host reached from the controller over libvirt's own connection (qemu+tls://HOST/system
// with the controller's client certificate, see ca.ts). Nothing else needs to listen on the
// host: domains go through the node-libvirt binding, files through libvirt's storage API
// (virsh on the same URI, as the binding has no storage calls):
//
//   pool weft-images (dir, <remoteDir>/images)   base images, named <sha256>.qcow2, uploaded
//                                                once from the controller's own copy with
//                                                vol-upload, read back and hashed before use
//   pool weft-guests (dir, <remoteDir>/guests)   <guest>.qcow2 overlays (vol-create-as with
//                                                --backing-vol: libvirt runs qemu-img on the
//                                                host), <guest>.iso config drives (built here,
//                                                uploaded), <guest>.log serial consoles
//
// The format and backing file of every volume are read from vol-dumpxml (libvirt probes the
// header on the host) and checked as for the local driver.
//
// What libvirt cannot do is the host's nftables: setVips hands the rendered table to
// `applyNft`, which is meant to reach the host agent; without one it refuses, and the guest
// service logs that the VIP was not updated.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { WeftError, conflict } from "../errors.js";
import type { Logger } from "../log.js";
import type { Exec } from "./exec.js";
import {
  buildConfigDrive,
  LibvirtDomains,
  type BaseImageRef,
  type ConfigDriveData,
  type DomainRunState,
  type GuestPaths,
  type HostCapabilities,
  type HostDriver,
  type HostInventory,
} from "./host-driver.js";
import { renderNftTable, type VipRule } from "./nft.js";

export interface RemoteHostDriverOptions {
  /** qemu+tls://HOST/system?pkipath=... (any libvirt URI works: tests use a local socket). */
  libvirtUri: string;
  /** The guest directory on the host. */
  remoteDir: string;
  network: string;
  guestSubnet: string;
  /** The controller's copy of an image (Images.fileOf). */
  imageFile: (image: BaseImageRef) => string | Promise<string>;
  exec: Exec;
  log: Logger;
  /** What the host agent reported at registration (read when first needed). */
  capabilities: HostCapabilities | (() => Promise<HostCapabilities>);
  /** How long a create waits for the host agent to bring the guest network up. */
  networkWaitMs?: number;
  /** Applies a rendered nftables table on the host (through its agent). */
  applyNft?: (script: string) => Promise<void>;
}

export const IMAGES_POOL = "weft-images";
export const GUESTS_POOL = "weft-guests";

export interface VolumeInfo {
  path: string | null;
  format: string | null;
  capacity: number | null;
  backingPath: string | null;
  backingFormat: string | null;
}

/** The parts of `virsh vol-dumpxml` that matter here. */
export function parseVolumeXml(xml: string): VolumeInfo {
  const target = /<target>([\s\S]*?)<\/target>/.exec(xml)?.[1] ?? "";
  const backing = /<backingStore>([\s\S]*?)<\/backingStore>/.exec(xml)?.[1] ?? null;
  const unescape = (v: string) =>
    v
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&");
  const pathOf = (x: string) => {
    const m = /<path>([^<]*)<\/path>/.exec(x)?.[1];
    return m === undefined ? null : unescape(m);
  };
  const formatOf = (x: string) => /<format type=['"]([^'"]+)['"]/.exec(x)?.[1] ?? null;
  const cap = /<capacity unit=['"]bytes['"]>(\d+)<\/capacity>/.exec(xml)?.[1];
  return {
    path: pathOf(target),
    format: formatOf(target),
    capacity: cap === undefined ? null : Number(cap),
    backingPath: backing === null ? null : pathOf(backing),
    backingFormat: backing === null ? null : formatOf(backing),
  };
}

const refuse = (code: string, message: string) => new WeftError("invalid_request", code, message);

export class RemoteHostDriver implements HostDriver {
  readonly #o: RemoteHostDriverOptions;
  readonly #domains: LibvirtDomains;
  readonly #uploads = new Map<string, Promise<string>>();
  #pools: Promise<void> | undefined;

  constructor(options: RemoteHostDriverOptions) {
    this.#o = options;
    this.#domains = new LibvirtDomains(options.libvirtUri, (args) => this.#virsh(args));
  }

  get network(): string {
    return this.#o.network;
  }

  #virsh(args: string[], allowFailure = false) {
    return this.#o.exec("virsh", ["-c", this.#o.libvirtUri, "-q", ...args], {
      allowFailure,
      timeoutMs: 600_000,
    });
  }

  paths(guest: string): GuestPaths {
    const d = path.posix.join(this.#o.remoteDir, "guests");
    return {
      overlay: `${d}/${guest}.qcow2`,
      configDrive: `${d}/${guest}.iso`,
      console: `${d}/${guest}.log`,
    };
  }

  async capabilities(): Promise<HostCapabilities> {
    const c = this.#o.capabilities;
    return typeof c === "function" ? c() : c;
  }

  /** The two storage pools, defined, built and active. Once per driver. */
  #ensurePools(): Promise<void> {
    this.#pools ??= (async () => {
      for (const [name, dir] of [
        [IMAGES_POOL, "images"],
        [GUESTS_POOL, "guests"],
      ] as const) {
        const info = await this.#virsh(["pool-info", name], true);
        if (info.exitCode !== 0) {
          await this.#virsh([
            "pool-define-as",
            name,
            "dir",
            "--target",
            path.posix.join(this.#o.remoteDir, dir),
          ]);
          await this.#virsh(["pool-build", name]);
        }
        if (!/^State:\s+running/m.test((await this.#virsh(["pool-info", name])).stdout))
          await this.#virsh(["pool-start", name]);
        await this.#virsh(["pool-autostart", name], true);
      }
    })();
    this.#pools.catch(() => (this.#pools = undefined));
    return this.#pools;
  }

  async networkEnsure(): Promise<void> {
    // The guest network is defined by the host agent (a guest-network command queued when the
    // host registers); here it is only checked, waiting a little for a host that just came up.
    const deadline = Date.now() + (this.#o.networkWaitMs ?? 30_000);
    for (;;) {
      const r = await this.#virsh(["net-info", this.#o.network], true);
      if (r.exitCode === 0 && /^Active:\s+yes/m.test(r.stdout)) return;
      if (Date.now() > deadline)
        throw new WeftError(
          "unavailable",
          "GUEST_NETWORK_MISSING",
          `network ${this.#o.network} is not active on the host`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async #volume(pool: string, name: string): Promise<VolumeInfo | null> {
    const r = await this.#virsh(["vol-dumpxml", "--pool", pool, name], true);
    if (r.exitCode !== 0) {
      if (/not found|no storage vol/i.test(r.stderr)) return null;
      throw new WeftError(
        "unavailable",
        "HOST_COMMAND_FAILED",
        `vol-dumpxml ${pool}/${name}: ${r.stderr.trim()}`,
      );
    }
    return parseVolumeXml(r.stdout);
  }

  #baseName(image: BaseImageRef): string {
    if (!/^[0-9a-f]{64}$/.test(image.sha256))
      throw new WeftError("invalid_request", "IMAGE_SHA256_INVALID", `image ${image.name} has a bad sha256`);
    return `${image.sha256}.qcow2`;
  }

  async ensureBaseImage(image: BaseImageRef): Promise<string> {
    const key = image.sha256;
    const inflight = this.#uploads.get(key);
    if (inflight) return inflight;
    const p = this.#upload(image).finally(() => this.#uploads.delete(key));
    this.#uploads.set(key, p);
    return p;
  }

  async #upload(image: BaseImageRef): Promise<string> {
    await this.#ensurePools();
    const vol = this.#baseName(image);
    await this.#virsh(["pool-refresh", IMAGES_POOL]);
    let info = await this.#volume(IMAGES_POOL, vol);
    if (info && info.path && (await this.#hashRemote(vol)) !== image.sha256) {
      this.#o.log.warn(
        { image: image.name },
        "cached base on the host does not match its sha256; uploading again",
      );
      await this.#virsh(["vol-delete", "--pool", IMAGES_POOL, vol]);
      info = null;
    }
    if (!info) {
      const local = await this.#o.imageFile(image);
      await this.#virsh(["vol-create-as", IMAGES_POOL, vol, String(image.size), "--format", "raw"]);
      await this.#virsh(["vol-upload", "--pool", IMAGES_POOL, vol, local]);
      const digest = await this.#hashRemote(vol);
      if (digest !== image.sha256) {
        await this.#virsh(["vol-delete", "--pool", IMAGES_POOL, vol], true);
        throw new WeftError(
          "unavailable",
          "IMAGE_CHECKSUM_MISMATCH",
          `image ${image.name} on the host has sha256 ${digest}, expected ${image.sha256}`,
        );
      }
      await this.#virsh(["pool-refresh", IMAGES_POOL]);
      info = await this.#volume(IMAGES_POOL, vol);
    }
    if (!info?.path)
      throw new WeftError("unavailable", "IMAGE_MISSING", `volume ${vol} vanished from the host`);
    if (info.format !== "qcow2")
      throw refuse("IMAGE_FORMAT_WRONG", `${image.name} is ${info.format}, expected qcow2`);
    if (info.backingPath !== null)
      throw refuse(
        "IMAGE_BACKING_FILE",
        `${image.name} names a backing file (${info.backingPath}); a base must stand alone`,
      );
    return info.path;
  }

  /** Reads a base back from the host and hashes it. */
  async #hashRemote(vol: string): Promise<string> {
    const tmp = path.join(os.tmpdir(), `weft-vol-${process.pid}-${crypto.randomBytes(4).toString("hex")}`);
    try {
      await this.#virsh(["vol-download", "--pool", IMAGES_POOL, vol, tmp]);
      const hash = crypto.createHash("sha256");
      for await (const c of fs.createReadStream(tmp)) hash.update(c as Buffer);
      return hash.digest("hex");
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }

  async createOverlay(guest: string, image: BaseImageRef, diskBytes: number): Promise<string> {
    const base = await this.ensureBaseImage(image);
    const name = `${guest}.qcow2`;
    await this.#virsh(["vol-delete", "--pool", GUESTS_POOL, name], true);
    await this.#virsh([
      "vol-create-as",
      GUESTS_POOL,
      name,
      String(diskBytes),
      "--format",
      "qcow2",
      "--backing-vol",
      base,
      "--backing-vol-format",
      "qcow2",
    ]);
    const info = await this.#volume(GUESTS_POOL, name);
    if (info?.format !== "qcow2" || info.backingPath !== base || info.backingFormat !== "qcow2")
      throw refuse(
        "IMAGE_BACKING_FILE",
        `overlay ${name} is ${info?.format} backed by ${info?.backingPath} (${info?.backingFormat}), expected qcow2 on ${base}`,
      );
    return info.path ?? this.paths(guest).overlay;
  }

  async writeConfigDrive(d: ConfigDriveData): Promise<string> {
    await this.#ensurePools();
    const local = path.join(
      os.tmpdir(),
      `weft-cidata-${process.pid}-${crypto.randomBytes(4).toString("hex")}.iso`,
    );
    try {
      await buildConfigDrive(this.#o.exec, d, local);
      const name = `${d.name}.iso`;
      await this.#virsh(["vol-delete", "--pool", GUESTS_POOL, name], true);
      await this.#virsh([
        "vol-create-as",
        GUESTS_POOL,
        name,
        String(fs.statSync(local).size),
        "--format",
        "raw",
      ]);
      await this.#virsh(["vol-upload", "--pool", GUESTS_POOL, name, local]);
    } finally {
      fs.rmSync(local, { force: true });
    }
    return this.paths(d.name).configDrive;
  }

  defineAndStart(guest: string, xml: string, opts: { liveHardLimitKiB?: number } = {}): Promise<void> {
    return this.#domains.defineAndStart(guest, xml, opts);
  }

  domainState(guest: string): Promise<DomainRunState> {
    return this.#domains.state(guest);
  }

  async destroy(guest: string): Promise<void> {
    await this.#domains.remove(guest);
    await this.#ensurePools();
    await this.#virsh(["pool-refresh", GUESTS_POOL]); // the console log is libvirt's own file
    for (const ext of ["qcow2", "iso", "log"]) {
      const r = await this.#virsh(["vol-delete", "--pool", GUESTS_POOL, `${guest}.${ext}`], true);
      if (r.exitCode !== 0 && !/not found|no storage vol/i.test(r.stderr))
        throw new WeftError(
          "unavailable",
          "HOST_COMMAND_FAILED",
          `removing ${guest}.${ext}: ${r.stderr.trim()}`,
        );
    }
  }

  async #guestVolumes(): Promise<string[]> {
    await this.#ensurePools();
    await this.#virsh(["pool-refresh", GUESTS_POOL]);
    // "name   path" per line (this virsh has no --name); volume names here have no spaces.
    const r = await this.#virsh(["vol-list", GUESTS_POOL]);
    return r.stdout
      .split("\n")
      .map((l) => l.trim().split(/\s+/)[0] ?? "")
      .filter(Boolean);
  }

  async removeBase(image: BaseImageRef): Promise<void> {
    const vol = this.#baseName(image);
    const base = await this.#volume(IMAGES_POOL, vol);
    if (!base?.path) return;
    const users: string[] = [];
    for (const name of (await this.#guestVolumes()).filter((n) => n.endsWith(".qcow2"))) {
      const info = await this.#volume(GUESTS_POOL, name);
      if (info?.backingPath === base.path) users.push(name.slice(0, -".qcow2".length));
    }
    if (users.length)
      throw conflict("IMAGE_IN_USE", `base image ${image.name} is used by ${users.join(", ")}`, {
        guests: users,
      });
    await this.#virsh(["vol-delete", "--pool", IMAGES_POOL, vol]);
  }

  async setVips(rules: VipRule[]): Promise<void> {
    const script = renderNftTable(this.#o.guestSubnet, rules);
    if (!this.#o.applyNft)
      throw new WeftError(
        "unavailable",
        "VIP_RULES_UNSUPPORTED",
        "this host's nftables are applied by its agent, which is not connected to this driver",
      );
    await this.#o.applyNft(script);
  }

  async inventory(): Promise<HostInventory> {
    const domains = await this.#domains.guests();
    const overlays = (await this.#guestVolumes())
      .filter((n) => n.endsWith(".qcow2"))
      .map((n) => n.slice(0, -".qcow2".length));
    return { domains, overlays };
  }

  close(): Promise<void> {
    return this.#domains.close();
  }
}
