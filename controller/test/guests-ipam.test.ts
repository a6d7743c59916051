// IPAM on a real (temp SQLite) store: pools, reserved addresses, and the unique columns
// arbitrating between concurrent claims.
import { afterEach, describe, expect, it } from "vitest";
import { firstFree, hostAddresses, Ipam, ipToInt, intToIp, parseCidr } from "../src/guests/ipam.js";
import { addImage, tempStore, type TempStore } from "./guests-helpers.js";

const stores: TempStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.cleanup();
});
const store = () => {
  const s = tempStore();
  stores.push(s);
  return s;
};

describe("address arithmetic", () => {
  it("converts and enumerates", () => {
    expect(intToIp(ipToInt("10.78.1.2"))).toBe("10.78.1.2");
    expect(parseCidr("10.78.5.7/16")).toEqual({ network: ipToInt("10.78.0.0"), prefix: 16, size: 65536 });
    expect([...hostAddresses("10.0.0.0/30")]).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(firstFree("10.0.0.0/29", new Set(["10.0.0.2"]), new Set(["10.0.0.1"]))).toBe("10.0.0.3");
    expect(firstFree("10.0.0.0/30", new Set(["10.0.0.1", "10.0.0.2"]))).toBeNull();
    expect(() => ipToInt("10.0.0.256")).toThrow(/not IPv4/);
    expect(() => parseCidr("10.0.0.0/31")).toThrow(/CIDR/);
  });
});

describe("Ipam", () => {
  async function insertGuest(s: TempStore, imageId: string, name: string, dip: string) {
    return s.db.guest.create({
      data: {
        name,
        imageId,
        dip,
        vcpus: 1,
        cpuMhz: 1600,
        memoryMiB: 512,
        diskBytes: 1n << 30n,
        netInKBps: 1000,
        netOutKBps: 1000,
      },
    });
  }

  it("hands out DIPs in order, skipping the gateway, never twice", async () => {
    const s = store();
    const img = await addImage(s.db);
    const ipam = new Ipam(s.db);
    const a = await ipam.claimDip((dip) => insertGuest(s, img.id, "a", dip));
    const b = await ipam.claimDip((dip) => insertGuest(s, img.id, "b", dip));
    expect([a.dip, b.dip]).toEqual(["10.78.0.2", "10.78.0.3"]);
    await s.db.guest.delete({ where: { id: a.id } });
    const c = await ipam.claimDip((dip) => insertGuest(s, img.id, "c", dip));
    expect(c.dip).toBe("10.78.0.2");
  });

  it("retries on the next address when a concurrent claim wins", async () => {
    const s = store();
    const img = await addImage(s.db);
    const ipam = new Ipam(s.db);
    // Ten claims at once: all see the same free address, the unique column decides.
    const got = await Promise.all(
      Array.from({ length: 10 }, (_, i) => ipam.claimDip((dip) => insertGuest(s, img.id, `g${i}`, dip))),
    );
    const dips = got.map((g) => g.dip);
    expect(new Set(dips).size).toBe(10);
  });

  it("retries when another writer took the address between read and insert", async () => {
    const s = store();
    const img = await addImage(s.db);
    const ipam = new Ipam(s.db);
    let first = true;
    const g = await ipam.claimDip(async (dip) => {
      if (first) {
        first = false;
        await insertGuest(s, img.id, "sneaky", dip); // another controller wins the race
      }
      return insertGuest(s, img.id, "mine", dip);
    });
    expect(g.dip).toBe("10.78.0.3");
  });

  it("reports an exhausted pool", async () => {
    const s = store();
    const img = await addImage(s.db);
    const ipam = new Ipam(s.db, { guestSubnet: "10.9.0.0/30", gateway: "10.9.0.1", vipRange: "10.8.0.0/30" });
    await ipam.claimDip((dip) => insertGuest(s, img.id, "a", dip));
    await expect(ipam.claimDip((dip) => insertGuest(s, img.id, "b", dip))).rejects.toThrow(/no free DIP/);
  });

  it("gives each role one VIP, stable, unique under concurrency", async () => {
    const s = store();
    const ipam = new Ipam(s.db);
    const roles = await Promise.all(
      ["r1", "r2", "r3", "r4"].map((name) => s.db.role.create({ data: { name, instances: 1, spec: {} } })),
    );
    const vips = await Promise.all(roles.map((r) => ipam.claimVip(r.id)));
    expect(new Set(vips).size).toBe(4);
    expect(await ipam.claimVip(roles[0]!.id)).toBe(vips[0]);
    expect(vips.every((v) => v.startsWith("10.79.0."))).toBe(true);
  });
});
