// The host's nftables table: VIP DNAT balanced over DIPs, masquerade, atomic replacement.
import { describe, expect, it } from "vitest";
import { dnatRule, renderNftTable } from "../src/guests/nft.js";

describe("renderNftTable", () => {
  it("balances a VIP port across the role's DIPs and masquerades guest egress", () => {
    const t = renderNftTable("10.78.0.0/16", [
      { vip: "10.79.0.1", ports: [{ port: 80, protocol: "tcp" }], dips: ["10.78.0.3", "10.78.0.2"] },
    ]);
    expect(t).toBe(
      [
        "table ip weft {}",
        "delete table ip weft",
        "table ip weft {",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        "    ip daddr 10.79.0.1 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.78.0.2, 1 : 10.78.0.3 }",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    ip daddr 10.79.0.1 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.78.0.2, 1 : 10.78.0.3 }",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        "    ip saddr 10.78.0.0/16 ip daddr != 10.78.0.0/16 masquerade",
        "  }",
        "}",
        "",
      ].join("\n"),
    );
  });

  it("drops a deleted guest from the map and the rule with the last one", () => {
    expect(dnatRule("10.79.0.1", { port: 443, protocol: "tcp" }, ["10.78.0.2"])).toBe(
      "ip daddr 10.79.0.1 tcp dport 443 dnat to 10.78.0.2",
    );
    expect(dnatRule("10.79.0.1", { port: 443, protocol: "tcp" }, [])).toBeNull();
    const t = renderNftTable("10.78.0.0/16", [
      { vip: "10.79.0.1", ports: [{ port: 53, protocol: "udp" }], dips: [] },
    ]);
    expect(t).not.toContain("dnat");
  });

  it("renders several VIPs and ports in a stable order", () => {
    const t = renderNftTable("10.78.0.0/16", [
      { vip: "10.79.0.9", ports: [{ port: 53, protocol: "udp" }], dips: ["10.78.0.9"] },
      {
        vip: "10.79.0.1",
        ports: [
          { port: 80, protocol: "tcp" },
          { port: 443, protocol: "tcp" },
        ],
        dips: ["10.78.0.2"],
      },
    ]);
    const pre = t.split("chain output")[0]!;
    expect(pre.indexOf("10.79.0.1 tcp dport 80")).toBeLessThan(pre.indexOf("10.79.0.1 tcp dport 443"));
    expect(pre.indexOf("10.79.0.1 tcp dport 443")).toBeLessThan(pre.indexOf("10.79.0.9 udp dport 53"));
  });

  it("refuses anything that is not an address (no injection into the script)", () => {
    expect(() =>
      renderNftTable("10.78.0.0/16", [{ vip: "10.79.0.1; flush ruleset", ports: [], dips: [] }]),
    ).toThrow(/not IPv4/);
    expect(() =>
      renderNftTable("10.78.0.0/16", [{ vip: "10.79.0.1", ports: [], dips: ["1.2.3.4 }"] }]),
    ).toThrow(/not IPv4/);
    expect(() => renderNftTable("10.78.0.0/33", [])).toThrow(/CIDR/);
    expect(() =>
      renderNftTable("10.78.0.0/16", [
        { vip: "10.79.0.1", ports: [{ port: 0, protocol: "tcp" }], dips: ["10.78.0.2"] },
      ]),
    ).toThrow(/bad port/);
  });
});
