// An in-memory host for tests of the guest service: what a real host would hold (bases,
// overlays, domains, VIP rules), with failures and pauses on demand.
import { WeftError, conflict } from "../errors.js";
import type {
  BaseImageRef,
  ConfigDriveData,
  DomainRunState,
  GuestPaths,
  HostCapabilities,
  HostDriver,
  HostInventory,
} from "./host-driver.js";
import type { VipRule } from "./nft.js";
import type { PortSpec } from "./spec.js";

export type FakeStep = "network" | "base" | "overlay" | "configDrive" | "domain" | "destroy" | "vip";

export class FakeHostDriver implements HostDriver {
  readonly network = "weft-guests";
  readonly bases = new Set<string>();
  readonly overlays = new Map<string, string>();
  readonly configDrives = new Map<string, ConfigDriveData>();
  readonly domains = new Map<string, { xml: string; state: DomainRunState; liveHardLimitKiB?: number }>();
  vips = new Map<string, { ports: PortSpec[]; dips: string[] }>();
  readonly calls: string[] = [];
  downloads = 0;
  /** While false every call fails as an unreachable host would. */
  reachable = true;
  /** Steps that fail (once each time they are listed). */
  readonly failures: FakeStep[] = [];
  /** Steps that wait for release() before going on, the next time each is entered. */
  readonly #gates = new Map<FakeStep, { opened: Promise<void>; reached: () => void }>();

  constructor(
    readonly name = "fake",
    readonly caps: HostCapabilities = {
      bandwidth: true,
      bandwidthReason: "fake",
      memlock: true,
      memlockReason: "fake",
    },
  ) {}

  /** Makes `step` pause; resolves when a create reaches it. Call the returned release() to go on. */
  pause(step: FakeStep): { reached: Promise<void>; release: () => void } {
    let open!: () => void;
    let reached!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const wait = new Promise<void>((r) => (reached = r));
    this.#gates.set(step, { opened, reached });
    return { reached: wait, release: () => open() };
  }

  async #enter(step: FakeStep, what: string): Promise<void> {
    this.calls.push(`${step} ${what}`);
    const g = this.#gates.get(step);
    if (g) {
      this.#gates.delete(step);
      g.reached();
      await g.opened;
    }
    if (!this.reachable)
      throw new WeftError("unavailable", "HOST_UNREACHABLE", `host ${this.name} does not answer`);
    const i = this.failures.indexOf(step);
    if (i >= 0) {
      this.failures.splice(i, 1);
      throw new WeftError("unavailable", "HOST_COMMAND_FAILED", `${step} failed on ${this.name}`);
    }
  }

  paths(guest: string): GuestPaths {
    return {
      overlay: `/fake/overlays/${guest}.qcow2`,
      configDrive: `/fake/config/${guest}.iso`,
      console: `/fake/console/${guest}.log`,
    };
  }

  async capabilities(): Promise<HostCapabilities> {
    return this.caps;
  }

  async networkEnsure(): Promise<void> {
    await this.#enter("network", "");
  }

  async ensureBaseImage(image: BaseImageRef): Promise<string> {
    await this.#enter("base", image.name);
    if (!this.bases.has(image.sha256)) {
      this.downloads++;
      this.bases.add(image.sha256);
    }
    return `/fake/images/${image.sha256}.qcow2`;
  }

  async createOverlay(guest: string, image: BaseImageRef): Promise<string> {
    await this.#enter("overlay", guest);
    this.overlays.set(guest, image.sha256);
    return this.paths(guest).overlay;
  }

  async writeConfigDrive(data: ConfigDriveData): Promise<string> {
    await this.#enter("configDrive", data.name);
    this.configDrives.set(data.name, data);
    return this.paths(data.name).configDrive;
  }

  async defineAndStart(guest: string, xml: string, opts: { liveHardLimitKiB?: number } = {}): Promise<void> {
    await this.#enter("domain", guest);
    this.domains.set(guest, { xml, state: "running", ...opts });
  }

  async domainState(guest: string): Promise<DomainRunState> {
    return this.domains.get(guest)?.state ?? "absent";
  }

  async destroy(guest: string): Promise<void> {
    await this.#enter("destroy", guest);
    this.domains.delete(guest);
    this.overlays.delete(guest);
    this.configDrives.delete(guest);
  }

  async removeBase(image: BaseImageRef): Promise<void> {
    const users = [...this.overlays].filter(([, sha]) => sha === image.sha256).map(([g]) => g);
    if (users.length)
      throw conflict("IMAGE_IN_USE", `base image ${image.name} is used by ${users.join(", ")}`);
    this.bases.delete(image.sha256);
  }

  async setVips(rules: VipRule[]): Promise<void> {
    await this.#enter("vip", rules.map((r) => r.vip).join(","));
    this.vips = new Map(rules.map((r) => [r.vip, { ports: r.ports, dips: [...r.dips].sort() }]));
  }

  async inventory(): Promise<HostInventory> {
    if (!this.reachable)
      throw new WeftError("unavailable", "HOST_UNREACHABLE", `host ${this.name} does not answer`);
    return { domains: [...this.domains.keys()], overlays: [...this.overlays.keys()] };
  }

  async close(): Promise<void> {}
}
