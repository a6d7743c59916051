// Host mode: the host's side of guest networking, which the controller cannot do over libvirt.
//
//   guest-network command   the libvirt network guests attach to (defined, active, autostart),
//                           IPv4 forwarding on, and the `ip weft` nftables table the controller
//                           rendered (VIP DNAT across DIPs, guest masquerade), applied with
//                           `nft -f` in one transaction and kept in <stateDir>/weft.nft
//   at start                forwarding on and the kept table applied again (a reboot lost it;
//                           libvirt autostarts the network itself)
//   at registration         what the kernel can enforce: libvirt's <bandwidth> needs the htb,
//                           sfq and ingress qdiscs, tried on a throwaway veth pair
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { GuestNetwork, GuestNetworkParams, HostGuestCapabilities } from "@weft/wire";
import { AgentError, isAgentError } from "./errors.js";
import type { Exec } from "./exec.js";
import type { Logger } from "./log.js";

export const GUEST_STATE_DIR = "/var/lib/weft/guests";
export const NFT_TABLE = "weft";
const LIBVIRT = "qemu:///system";

export interface GuestNetDeps {
  exec: Exec;
  log: Logger;
  /** "/" on a host; tests point it elsewhere. */
  root: string;
  stateDir: string;
}

const esc = (v: string | number) =>
  String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&apos;");

/** Same shape as the controller's: open forward mode (no libvirt firewall rules), no DHCP/DNS. */
export function networkXml(n: GuestNetwork): string {
  return [
    `<network>`,
    `  <name>${esc(n.name)}</name>`,
    `  <forward mode='open'/>`,
    `  <bridge name='${esc(n.bridge)}' stp='off' delay='0'/>`,
    `  <dns enable='no'/>`,
    `  <ip address='${esc(n.gateway)}' prefix='${n.prefix}'/>`,
    `</network>`,
    ``,
  ].join("\n");
}

const HEADER = [`table ip ${NFT_TABLE} {}`, `delete table ip ${NFT_TABLE}`, `table ip ${NFT_TABLE} {`];
const COMMAND =
  /^\s*(table|delete|flush|include|add|insert|replace|create|define|undefine|redefine|reset|destroy|list|rename|export|import|monitor)\b/;

/**
 * The table must replace `ip weft` and nothing else: the controller's three header lines, then
 * only the body of that one table (no other nft command, no include of a host file).
 */
export function checkNftScript(script: string): void {
  const lines = script.split("\n");
  const bad = (why: string) =>
    new AgentError("invalid_request", "NFT_SCRIPT_REFUSED", `refused nftables script: ${why}`);
  for (let i = 0; i < HEADER.length; i++) {
    if (lines[i]?.trim() !== HEADER[i]) throw bad(`line ${i + 1} must be "${HEADER[i]}"`);
  }
  let depth = 1;
  for (const [i, line] of lines.slice(HEADER.length).entries()) {
    if (depth === 0 && line.trim() !== "") throw bad(`line ${i + 4} is outside table ip ${NFT_TABLE}`);
    if (COMMAND.test(line) && depth <= 1 && !/^\s*chain\b/.test(line))
      throw bad(`line ${i + 4} is an nft command`);
    if (/\binclude\b/.test(line)) throw bad(`line ${i + 4} includes a file`);
    depth += (line.match(/{/g) ?? []).length - (line.match(/}/g) ?? []).length;
    if (depth < 0) throw bad(`unbalanced braces at line ${i + 4}`);
  }
  if (depth !== 0) throw bad("the table is not closed");
}

async function virsh(d: GuestNetDeps, args: string[], okExitCodes: number[] = [0]) {
  return d.exec.run("virsh", ["-c", LIBVIRT, "-q", ...args], { okExitCodes, timeoutMs: 60_000 });
}

async function ensureForwarding(d: GuestNetDeps): Promise<void> {
  await writeFile(join(d.root, "proc/sys/net/ipv4/ip_forward"), "1\n");
}

/** The guest network defined, active and autostarted. */
export async function ensureNetwork(d: GuestNetDeps, n: GuestNetwork): Promise<string> {
  // libvirt records each network's guest MACs there, even for a network without DHCP; the
  // directory only comes with the dnsmasq package, which a host does not need.
  await mkdir(join(d.root, "var/lib/libvirt/dnsmasq"), { recursive: true, mode: 0o755 });
  const info = await virsh(d, ["net-info", n.name], [0, 1]);
  let did = "present";
  if (info.exitCode !== 0) {
    await mkdir(d.stateDir, { recursive: true, mode: 0o755 });
    const file = join(d.stateDir, `.net-${randomBytes(4).toString("hex")}.xml`);
    await writeFile(file, networkXml(n), { mode: 0o600 });
    try {
      await virsh(d, ["net-define", file]);
    } finally {
      await rm(file, { force: true });
    }
    did = "defined";
  }
  const now = await virsh(d, ["net-info", n.name]);
  if (!/^Active:\s+yes/m.test(now.stdout)) {
    await virsh(d, ["net-start", n.name]);
    did = did === "defined" ? "defined and started" : "started";
  }
  await virsh(d, ["net-autostart", n.name]);
  return did;
}

async function applyNftFile(d: GuestNetDeps, file: string): Promise<void> {
  await d.exec.run("nft", ["-f", file], { timeoutMs: 30_000 });
}

export async function applyGuestNetwork(params: GuestNetworkParams, d: GuestNetDeps): Promise<string> {
  if (params.nft !== null) checkNftScript(params.nft);
  await ensureForwarding(d);
  const net = await ensureNetwork(d, params.network);
  const kept = join(d.stateDir, "weft.nft");
  let nft = "table unchanged";
  if (params.nft !== null) {
    await mkdir(d.stateDir, { recursive: true, mode: 0o755 });
    const tmp = `${kept}.${randomBytes(4).toString("hex")}`;
    await writeFile(tmp, params.nft, { mode: 0o600 });
    try {
      await applyNftFile(d, tmp);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await rename(tmp, kept);
    nft = `table ip ${NFT_TABLE} applied`;
  } else if (
    await readFile(kept, "utf8").then(
      () => true,
      () => false,
    )
  ) {
    await applyNftFile(d, kept);
    nft = `kept table ip ${NFT_TABLE} applied again`;
  }
  return `network ${params.network.name} ${net}; forwarding on; ${nft}`;
}

/** At start: forwarding on and the last table applied again. Never fatal. */
export async function restoreGuestNetwork(d: GuestNetDeps): Promise<void> {
  try {
    await ensureForwarding(d);
    const kept = join(d.stateDir, "weft.nft");
    const script = await readFile(kept, "utf8").catch(() => null);
    if (script !== null) {
      checkNftScript(script);
      await applyNftFile(d, kept);
      d.log.info("guest nftables table restored", { file: kept });
    }
  } catch (err) {
    d.log.warn("could not restore guest networking", { error: (err as Error).message });
  }
}

/**
 * libvirt's <bandwidth> builds an htb tree with sfq leaves and an ingress policer on the
 * guest's tap: try the same qdiscs on a throwaway veth pair. And whether this process (root
 * under systemd, like libvirtd) holds CAP_SYS_RESOURCE for <hard_limit>.
 */
export async function probeGuestCapabilities(d: GuestNetDeps): Promise<HostGuestCapabilities> {
  const dev = "weftbwp0";
  for (const m of ["sch_htb", "sch_sfq", "sch_ingress", "cls_u32", "act_police"]) {
    await d.exec.run("modprobe", [m], { okExitCodes: [0, 1] }).catch(() => undefined);
  }
  const run = (args: string[]) =>
    d.exec.run(args[0]!, args.slice(1), { okExitCodes: [0, 1, 2, 255], timeoutMs: 20_000 });
  let bandwidth = true;
  let bandwidthReason = "htb, sfq and ingress qdiscs work";
  await run(["ip", "link", "del", dev]).catch(() => undefined);
  try {
    for (const args of [
      ["ip", "link", "add", dev, "type", "veth", "peer", "name", "weftbwp1"],
      ["tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
      ["tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "1mbit"],
      ["tc", "qdisc", "add", "dev", dev, "parent", "1:1", "handle", "2:", "sfq", "perturb", "10"],
      ["tc", "qdisc", "add", "dev", dev, "ingress"],
    ]) {
      const r = await run(args);
      if (r.exitCode !== 0) {
        bandwidth = false;
        bandwidthReason = `\`${args.join(" ")}\` failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`;
        break;
      }
    }
  } catch (err) {
    bandwidth = false;
    bandwidthReason = isAgentError(err) ? err.message : String(err);
  } finally {
    await run(["ip", "link", "del", dev]).catch(() => undefined);
  }
  const status = await readFile(join(d.root, "proc/self/status"), "utf8").catch(() => "");
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  const memlock = hex !== undefined && ((BigInt(`0x${hex}`) >> 24n) & 1n) === 1n;
  const caps = {
    bandwidth,
    bandwidthReason,
    memlock,
    memlockReason: memlock ? "CAP_SYS_RESOURCE held" : "no CAP_SYS_RESOURCE",
  };
  d.log.info("guest capabilities", caps);
  return caps;
}
