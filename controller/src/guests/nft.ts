// The host's nftables table for guests, rendered whole from the desired state. Pure.
//
// Weft owns one table, `ip weft`, and replaces it atomically: the script first declares the
// table (a no-op if it exists), deletes it, then declares it again with its full contents, and
// `nft -f` applies all of that in one transaction. Nothing else on the host is touched.
//
//   prerouting (dstnat): traffic to a VIP's port is DNATed to one of the role's DIPs, in turn
//                        (`numgen inc mod N map { 0 : dip0, 1 : dip1, ... }`)
//   output (dstnat):     the same for connections made on the host itself
//   postrouting (srcnat): guests' traffic leaving the guest subnet is masqueraded behind the
//                        host's address (guests never reach the outside directly)
//
// A VIP with no DIP left has no rule: its traffic is not forwarded anywhere.
import { WeftError } from "../errors.js";
import type { PortSpec } from "./spec.js";

export interface VipRule {
  vip: string;
  ports: PortSpec[];
  dips: string[];
}

export const NFT_TABLE = "weft";

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function checkIp(v: string, what: string): string {
  if (!IPV4.test(v)) throw new WeftError("invalid_request", "ADDRESS_INVALID", `${what} ${v} is not IPv4`);
  return v;
}

function checkCidr(v: string): string {
  const [ip, len, ...rest] = v.split("/");
  const n = Number(len);
  if (rest.length || ip === undefined || !Number.isInteger(n) || n < 0 || n > 32)
    throw new WeftError("invalid_request", "ADDRESS_INVALID", `${v} is not an IPv4 CIDR`);
  return `${checkIp(ip, "subnet")}/${n}`;
}

/** The DNAT rule of one VIP port, or null when there is no DIP to send it to. */
export function dnatRule(vip: string, port: PortSpec, dips: readonly string[]): string | null {
  if (!dips.length) return null;
  const sorted = [...new Set(dips)].sort();
  const target =
    sorted.length === 1
      ? sorted[0]!
      : `numgen inc mod ${sorted.length} map { ${sorted.map((d, i) => `${i} : ${d}`).join(", ")} }`;
  return `ip daddr ${vip} ${port.protocol} dport ${port.port} dnat to ${target}`;
}

export function renderNftTable(guestSubnet: string, vips: readonly VipRule[]): string {
  const subnet = checkCidr(guestSubnet);
  const rules: string[] = [];
  for (const v of [...vips].sort((a, b) => (a.vip < b.vip ? -1 : a.vip > b.vip ? 1 : 0))) {
    checkIp(v.vip, "VIP");
    for (const d of v.dips) checkIp(d, "DIP");
    for (const p of v.ports) {
      if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535 || !["tcp", "udp"].includes(p.protocol))
        throw new WeftError("invalid_request", "PORT_INVALID", `bad port ${p.protocol}/${p.port}`);
      const r = dnatRule(v.vip, p, v.dips);
      if (r) rules.push(r);
    }
  }
  const chain = (name: string, hook: string, priority: string, body: string[]) => [
    `  chain ${name} {`,
    `    type nat hook ${hook} priority ${priority}; policy accept;`,
    ...body.map((r) => `    ${r}`),
    `  }`,
  ];
  return [
    `table ip ${NFT_TABLE} {}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    ...chain("prerouting", "prerouting", "dstnat", rules),
    // "dstnat" names -100 only on prerouting for nft 1.0; output takes the number.
    ...chain("output", "output", "-100", rules),
    ...chain("postrouting", "postrouting", "srcnat", [`ip saddr ${subnet} ip daddr != ${subnet} masquerade`]),
    `}`,
    ``,
  ].join("\n");
}
