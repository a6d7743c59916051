// Placement: capacity without overcommit, spreading a role, refusals that explain themselves.
import { describe, expect, it } from "vitest";
import { WeftError } from "../src/errors.js";
import {
  hostCapacity,
  placeMany,
  placeOne,
  type PlacementGuest,
  type PlacementHost,
  type PlacementRequest,
} from "../src/guests/placement.js";

const GB = 1_000_000_000;
const host = (id: string, over: Partial<PlacementHost> = {}): PlacementHost => ({
  id,
  name: id,
  state: "ready",
  cpus: 4,
  cpuMhz: 2400,
  memoryMiB: 16_384,
  diskBytes: 1000 * GB,
  kvm: true,
  netKBps: 125_000,
  ...over,
});
const small: PlacementRequest = {
  roleId: "web",
  vcpus: 1,
  cpuMhz: 1600,
  memoryMiB: 1741,
  diskBytes: 250 * GB,
  netInKBps: 12_500,
  netOutKBps: 12_500,
};
const on = (hostId: string, over: Partial<PlacementGuest> = {}): PlacementGuest => ({
  ...small,
  hostId,
  ...over,
});

describe("placeOne", () => {
  const cases: {
    name: string;
    hosts: PlacementHost[];
    guests: PlacementGuest[];
    req?: Partial<PlacementRequest>;
    want?: string;
    refused?: RegExp[];
  }[] = [
    { name: "the only host that fits", hosts: [host("a")], guests: [], want: "a" },
    {
      name: "spreads a role to the host with fewer of its instances",
      hosts: [host("a"), host("b")],
      guests: [on("a")],
      want: "b",
    },
    {
      name: "ignores other roles when spreading, then prefers free memory",
      hosts: [host("a"), host("b")],
      guests: [on("b", { roleId: "db" })],
      want: "a",
    },
    {
      name: "skips a host that is not ready",
      hosts: [host("a", { state: "draining" }), host("b")],
      guests: [],
      want: "b",
    },
    {
      name: "refuses memory overcommit (hard limit counts QEMU overhead)",
      hosts: [host("a", { memoryMiB: 1024 + 1741 + 256 - 1 })],
      guests: [],
      refused: [/a: memory: needs 1997 MiB \(with QEMU overhead\), 1996 MiB free/],
    },
    {
      name: "refuses CPU beyond cores × clock",
      hosts: [host("a", { cpus: 1 })],
      guests: [on("a")],
      refused: [/CPU: needs 1600 MHz, 800 MHz free/],
    },
    {
      name: "refuses a vCPU faster than a core and more vCPUs than cores",
      hosts: [host("a", { cpuMhz: 1000, cpus: 2 })],
      guests: [],
      req: { vcpus: 3 },
      refused: [/needs 3 vCPUs, host has 2 cores/, /faster than its 1000 MHz cores/],
    },
    {
      name: "refuses disk and network when full, listing every host",
      hosts: [host("a", { diskBytes: 100 * GB }), host("b", { netKBps: 10_000 })],
      guests: [],
      refused: [/a: disk: needs 250000000000 bytes/, /b: network: needs 12500 KB\/s, 10000 KB\/s free/],
    },
    { name: "says when there are no hosts", hosts: [], guests: [], refused: [/there are no hosts/] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const req = { ...small, ...c.req };
      if (c.want) {
        expect(placeOne(c.hosts, c.guests, req).id).toBe(c.want);
        return;
      }
      let err: unknown;
      try {
        placeOne(c.hosts, c.guests, req);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WeftError);
      expect((err as WeftError).code).toBe("NO_CAPACITY");
      for (const re of c.refused ?? []) expect((err as Error).message).toMatch(re);
    });
  }
});

describe("placeMany", () => {
  it("spreads instances round the hosts, each seeing the ones before", () => {
    const ids = placeMany([host("a"), host("b"), host("c")], [], small, 5).map((h) => h.id);
    expect(ids.filter((i) => i === "a")).toHaveLength(2);
    expect(new Set(ids.slice(0, 3))).toEqual(new Set(["a", "b", "c"]));
  });

  it("stacks on one host when it is the only one, until it is full", () => {
    expect(() => placeMany([host("a", { cpus: 2 })], [], small, 4)).toThrow(/CPU: needs 1600 MHz/);
    expect(placeMany([host("a", { cpus: 2 })], [], small, 3).map((h) => h.id)).toEqual(["a", "a", "a"]);
  });
});

describe("hostCapacity", () => {
  it("reports total, used and free", () => {
    const c = hostCapacity(host("a", { kvm: false }), [on("a"), on("b")]);
    expect(c.total).toMatchObject({ cpuMhz: 9600, memoryMiB: 15_360 });
    expect(c.used).toMatchObject({ cpuMhz: 1600, memoryMiB: 1741 + 256 + 128, guests: 1 });
    expect(c.free.cpuMhz).toBe(8000);
  });
});
