// The lab's network: a namespace holding one bridge with the provisioning addresses. The
// namespace has no link to anything outside, so nothing the servers send leaves it.
import { NETWORK, type LabConfig } from "./config.js";
import type { LabSystem } from "./exec.js";

export async function netnsExists(sys: LabSystem, netns: string): Promise<boolean> {
  const r = await sys.run("ip", ["netns", "list"]);
  return r.stdout.split("\n").some((line) => line.split(" ")[0] === netns);
}

async function linkExists(sys: LabSystem, netns: string, link: string): Promise<boolean> {
  const r = await sys.run("ip", ["-n", netns, "link", "show", "dev", link], { allowFailure: true });
  return !r.failed;
}

/**
 * Creates what is missing: namespace, loopback up, bridge, its IPv4 and IPv6 addresses, and
 * the limited-broadcast route that a DHCP server written in Node needs to answer to
 * 255.255.255.255 (it cannot bind to a device). Returns whether the namespace or the bridge
 * had to be created.
 */
export async function ensureNetwork(sys: LabSystem, config: LabConfig): Promise<boolean> {
  const { netns, bridge } = config;
  let created = false;
  if (!(await netnsExists(sys, netns))) {
    await sys.run("ip", ["netns", "add", netns]);
    created = true;
  }
  await sys.run("ip", ["-n", netns, "link", "set", "lo", "up"]);
  if (!(await linkExists(sys, netns, bridge))) {
    // STP off (the default) so ports forward at once; a fixed MAC so it does not change as VMs come and go.
    await sys.run("ip", [
      "-n",
      netns,
      "link",
      "add",
      bridge,
      "address",
      NETWORK.bridgeMac,
      "type",
      "bridge",
      "stp_state",
      "0",
    ]);
    created = true;
  }
  await sys.run("ip", [
    "-n",
    netns,
    "addr",
    "replace",
    `${NETWORK.ipv4}/${NETWORK.ipv4Prefix}`,
    "dev",
    bridge,
  ]);
  // nodad: usable at once; the router advertisements need the address.
  await sys.run("ip", [
    "-n",
    netns,
    "-6",
    "addr",
    "replace",
    `${NETWORK.ipv6}/${NETWORK.ipv6Prefix}`,
    "dev",
    bridge,
    "nodad",
  ]);
  await sys.run("ip", ["-n", netns, "link", "set", bridge, "up"]);
  await sys.run("ip", ["-n", netns, "route", "replace", "255.255.255.255/32", "dev", bridge]);
  return created;
}

/** Removes the bridge and the namespace; absent ones are fine. */
export async function removeNetwork(sys: LabSystem, config: LabConfig): Promise<string[]> {
  const removed: string[] = [];
  if (await netnsExists(sys, config.netns)) {
    if (await linkExists(sys, config.netns, config.bridge)) {
      await sys.run("ip", ["-n", config.netns, "link", "del", config.bridge]);
      removed.push(`bridge ${config.bridge}`);
    }
    await sys.run("ip", ["netns", "del", config.netns]);
    removed.push(`namespace ${config.netns}`);
  }
  return removed;
}
