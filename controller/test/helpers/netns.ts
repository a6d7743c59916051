// Network namespaces for tests that need real traffic: a namespace per test file, bridges and
// veth pairs inside it, processes started in it and ended by their own PID. destroy() is safe
// to call twice and after a failed setup; deleting the namespace removes its interfaces.
//
// Names start with "weft" so a leftover is easy to recognise (`ip netns list | grep weft`),
// and interface names stay within the kernel's 15 characters.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import crypto from "node:crypto";

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to completion (no shell). Rejects only when it cannot start. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs ? setTimeout(() => p.kill("SIGKILL"), opts.timeoutMs) : undefined;
    p.on("error", reject);
    p.on("close", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.on("error", () => undefined); // the command may exit before reading
    p.stdin.end(opts.input ?? "");
  });
}

/** Run a command and fail with its stderr when it exits non-zero. */
export async function mustRun(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** A short random name with a prefix, at most `max` characters (15 for interfaces). */
export function uniqueName(prefix: string, max = 15): string {
  const rand = crypto.randomBytes(4).toString("hex");
  return `${prefix}${rand}`.slice(0, max);
}

export interface VethPair {
  /** The end attached to the bridge. */
  port: string;
  /** The other end, in this namespace or in `peerNs`. */
  peer: string;
  /** The peer's MAC address. */
  peerMac: string;
}

export class Netns {
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(readonly name: string) {}

  /** Create a namespace named `${prefix}-${random}` with loopback up. */
  static async create(prefix = "weft"): Promise<Netns> {
    if (!prefix.startsWith("weft")) throw new Error("namespace names start with weft");
    const ns = new Netns(`${prefix}-${crypto.randomBytes(4).toString("hex")}`);
    await mustRun("ip", ["netns", "add", ns.name]);
    try {
      await ns.ip("link", "set", "lo", "up");
    } catch (e) {
      await ns.destroy();
      throw e;
    }
    return ns;
  }

  /** `ip -n <ns> ...` */
  ip(...args: string[]): Promise<string> {
    return mustRun("ip", ["-n", this.name, ...args]);
  }

  /** A bridge, up, with an optional address ("10.0.0.1/24"). */
  async addBridge(name: string, cidr?: string): Promise<void> {
    await this.ip("link", "add", name, "type", "bridge");
    if (cidr) await this.ip("addr", "add", cidr, "dev", name);
    await this.ip("link", "set", name, "up");
  }

  /**
   * A veth pair with one end on `bridge`; the other end stays here or moves to `peerNs`,
   * optionally with an address and a MAC. Both ends are brought up.
   */
  async addVeth(
    bridge: string,
    opts: { port?: string; peer?: string; peerNs?: Netns; peerCidr?: string; peerMac?: string } = {},
  ): Promise<VethPair> {
    const port = opts.port ?? uniqueName("weftp");
    const peer = opts.peer ?? uniqueName("weftv");
    await this.ip("link", "add", port, "type", "veth", "peer", "name", peer);
    await this.ip("link", "set", port, "master", bridge);
    await this.ip("link", "set", port, "up");
    const target = opts.peerNs ?? this;
    if (opts.peerNs) await this.ip("link", "set", peer, "netns", opts.peerNs.name);
    if (opts.peerMac) await target.ip("link", "set", peer, "address", opts.peerMac);
    if (opts.peerCidr) await target.ip("addr", "add", opts.peerCidr, "dev", peer);
    await target.ip("link", "set", peer, "up");
    const info = JSON.parse(await target.ip("-j", "link", "show", peer)) as { address: string }[];
    return { port, peer, peerMac: info[0]?.address ?? "" };
  }

  /** Start a process inside the namespace; destroy() ends it if it is still running. */
  spawn(cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const p = spawn("ip", ["netns", "exec", this.name, cmd, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      ...opts,
    });
    this.children.add(p);
    p.on("exit", () => this.children.delete(p));
    return p;
  }

  /** Run a command inside the namespace to completion. */
  async exec(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
    return run("ip", ["netns", "exec", this.name, cmd, ...args], opts);
  }

  /** End a process started with spawn(): SIGTERM, then SIGKILL after `graceMs`. */
  static async stop(p: ChildProcess, graceMs = 3000): Promise<void> {
    if (p.exitCode !== null || p.signalCode !== null || p.pid === undefined) return;
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    p.kill("SIGTERM");
    const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** End every process started here, then delete the namespace and its interfaces. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.children].map((p) => Netns.stop(p)));
    await run("ip", ["netns", "del", this.name]);
  }
}
