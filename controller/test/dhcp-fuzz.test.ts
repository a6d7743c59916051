// Fuzz: decode throws only DhcpDecodeError, and the server handler never throws, whatever comes in.
import { describe, expect, it } from "vitest";
import { decodeRequest } from "../src/netboot/dhcp/codec.js";
import { DhcpDecodeError } from "../src/netboot/dhcp/errors.js";
import { MemoryLeaseStore } from "../src/netboot/dhcp/lease-store.js";
import { DhcpServer } from "../src/netboot/dhcp/server.js";
import { fixture, fixtureNames, recordingLogger } from "./dhcp-helpers.js";
import { fuzzInputs } from "./dhcp-fuzz-inputs.js";

const seeds = fixtureNames().map(fixture);

describe("DHCP fuzz", () => {
  it("decode throws nothing but DhcpDecodeError on 20,000 random and mutated packets", () => {
    let ok = 0;
    let refused = 0;
    for (const input of fuzzInputs(seeds, 20_000, 0xdecaf)) {
      try {
        decodeRequest(input);
        ok++;
      } catch (e) {
        if (!(e instanceof DhcpDecodeError))
          throw new Error(`non-codec error for ${input.toString("hex")}`, { cause: e });
        refused++;
      }
    }
    expect(ok + refused).toBe(20_000);
    expect(ok).toBeGreaterThan(1000); // the mutations reach past the header checks
  });

  it("the server handler survives 5,000 of them and logs every refusal", async () => {
    const logger = recordingLogger();
    const server = new DhcpServer({
      mode: "full",
      serverAddress: "10.9.0.1",
      subnets: [{ cidr: "10.9.0.0/16", range: { start: "10.9.1.0", end: "10.9.250.255" } }],
      boot: {
        biosFile: "undionly.kpxe",
        efiX64File: "ipxe.efi",
        httpBootUrl: () => "u",
        ipxeScriptUrl: () => "s",
      },
      leases: new MemoryLeaseStore(),
      logger,
    });
    let replies = 0;
    let silent = 0;
    for (const input of fuzzInputs(seeds, 5_000, 7)) {
      const before = logger.lines.length;
      if (await server.handle(input, { address: "0.0.0.0", port: 68 })) replies++;
      else if (logger.lines.length === before) silent++;
    }
    expect(replies).toBeGreaterThan(0);
    expect(silent).toBe(0);
    expect(logger.lines.filter((l) => l.level === "error")).toEqual([]);
  });
});
