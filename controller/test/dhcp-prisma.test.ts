// The Prisma-backed lease store and machine hooks on a temp SQLite file.
import { afterEach, describe, expect, it } from "vitest";
import { decodeRequest } from "../src/netboot/dhcp/codec.js";
import type { Lease } from "../src/netboot/dhcp/lease-store.js";
import { PrismaLeaseStore } from "../src/netboot/dhcp/lease-store-prisma.js";
import { PrismaMachineHooks } from "../src/netboot/dhcp/machines-prisma.js";
import { MessageType, Opt, write } from "../src/netboot/dhcp/options.js";
import { DhcpServer } from "../src/netboot/dhcp/server.js";
import { openDb } from "../src/store/db.js";
import { clientPacket, fixture, recordingLogger, tempDb } from "./dhcp-helpers.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function store() {
  const t = tempDb();
  cleanups.push(t.cleanup);
  return t;
}

const now = new Date("2026-11-25T12:00:00Z");
const later = (s: number) => new Date(now.getTime() + s * 1000);
const lease = (ip: string, mac: string, over: Partial<Lease> = {}): Lease => ({
  ip,
  mac,
  clientId: null,
  hostname: null,
  state: "offered",
  reserved: false,
  expiresAt: later(60),
  machineId: null,
  ...over,
});

describe("PrismaLeaseStore", () => {
  it("claims a new address, refuses it to another client until it expires", async () => {
    const s = new PrismaLeaseStore(store().db);
    expect(await s.claim(lease("10.0.0.5", "aa:00:00:00:00:01"), now)).toMatchObject({ ip: "10.0.0.5" });
    expect(await s.claim(lease("10.0.0.5", "aa:00:00:00:00:02"), now)).toBeUndefined();
    expect(await s.claim(lease("10.0.0.5", "aa:00:00:00:00:01", { state: "bound" }), now)).toMatchObject({
      state: "bound",
    });
    expect(await s.claim(lease("10.0.0.5", "aa:00:00:00:00:02"), later(61))).toMatchObject({
      mac: "aa:00:00:00:00:02",
    });
  });

  it("identifies the client by option 61 when both sides have one", async () => {
    const s = new PrismaLeaseStore(store().db);
    await s.claim(lease("10.0.0.6", "aa:00:00:00:00:01", { clientId: "01aa" }), now);
    expect(await s.findByClient({ mac: "aa:00:00:00:00:01", clientId: "01bb" })).toHaveLength(0);
    expect(await s.findByClient({ mac: "aa:00:00:00:00:01", clientId: null })).toHaveLength(1);
    expect(
      await s.update(
        "10.0.0.6",
        { mac: "aa:00:00:00:00:09", clientId: "01aa" },
        { state: "bound", expiresAt: later(10) },
      ),
    ).toBe(true);
  });

  it("declines: nobody holds the address until the hold ends", async () => {
    const s = new PrismaLeaseStore(store().db);
    const me = { mac: "aa:00:00:00:00:01", clientId: null };
    await s.claim(lease("10.0.0.7", me.mac), now);
    expect(await s.decline("10.0.0.7", me, later(600))).toBe(true);
    expect(await s.claim(lease("10.0.0.7", me.mac), later(10))).toBeUndefined();
    expect(await s.listTaken(later(10))).toEqual(["10.0.0.7"]);
    expect(await s.claim(lease("10.0.0.7", me.mac), later(601))).toBeDefined();
  });

  it("lets exactly one of two controllers on one database win a race for an address", async () => {
    const t = store();
    const other = openDb(t.url);
    cleanups.push(() => other.$disconnect());
    const a = new PrismaLeaseStore(t.db);
    const b = new PrismaLeaseStore(other);
    for (let i = 0; i < 20; i++) {
      const ip = `10.0.1.${i}`;
      const results = await Promise.all([
        a.claim(lease(ip, "aa:00:00:00:00:01"), now),
        b.claim(lease(ip, "aa:00:00:00:00:02"), now),
      ]);
      expect(results.filter((r) => r !== undefined)).toHaveLength(1);
    }
  });
});

describe("PrismaMachineHooks", () => {
  it("records a first PXE sighting as a discovered machine with its NIC and an event, once", async () => {
    const { db } = store();
    const hooks = new PrismaMachineHooks(db);
    const info = {
      mac: "52:54:00:12:34:56",
      arch: 7,
      firmware: "uefi" as const,
      uuid: "8d3c6f1a-2b4e-4c5d-9e6f-0a1b2c3d4e5f",
      vendorClass: "PXEClient:Arch:00007:UNDI:003000",
      userClasses: undefined,
      hostname: undefined,
    };
    await Promise.all([hooks.onPxeClient(info), hooks.onPxeClient(info)]);
    await hooks.onPxeClient({ ...info, mac: "52:54:00:12:34:57" }); // second NIC, same UUID
    const machines = await db.machine.findMany({ include: { nics: true } });
    expect(machines).toHaveLength(1);
    expect(machines[0]).toMatchObject({
      provisionState: "discovered",
      arch: 7,
      firmware: "uefi",
      uuid: info.uuid,
    });
    expect(machines[0]?.nics.map((n) => n.mac).sort()).toEqual(["52:54:00:12:34:56", "52:54:00:12:34:57"]);
    const events = await db.event.findMany();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ subjectType: "machine", actor: "dhcp", toState: "discovered" });
    expect(await hooks.isKnown("52:54:00:12:34:57")).toBe(true);
  });
});

describe("DhcpServer on the Prisma store", () => {
  it("keeps a client's address across a server restart", async () => {
    const t = store();
    const make = (db = t.db) =>
      new DhcpServer({
        mode: "full",
        serverAddress: "10.9.0.1",
        subnets: [{ cidr: "10.9.0.0/24", range: { start: "10.9.0.100", end: "10.9.0.110" } }],
        boot: {
          biosFile: "undionly.kpxe",
          efiX64File: "ipxe.efi",
          httpBootUrl: () => "",
          ipxeScriptUrl: () => "",
        },
        leases: new PrismaLeaseStore(db),
        machines: new PrismaMachineHooks(db),
        logger: recordingLogger(),
      });
    const src = { address: "0.0.0.0", port: 68 };
    const first = make();
    await first.handle(clientPacket({ type: MessageType.Discover, mac: "52:54:00:00:00:02" }), src);
    const offer = await first.handle(fixture("qemu-ipxe-bios-discover.hex"), src);
    const ip = decodeRequest(offer!.data).msg.yiaddr;
    const req = clientPacket({
      type: MessageType.Request,
      mac: "52:54:00:12:34:56",
      options: [
        [Opt.RequestedIp, write.ip(ip)],
        [Opt.ServerId, write.ip("10.9.0.1")],
        [Opt.ClientId, Buffer.from("01525400123456", "hex")],
      ],
    });
    expect(decodeRequest((await first.handle(req, src))!.data).opts.messageType).toBe(MessageType.Ack);
    await first.stop();
    const db2 = openDb(t.url);
    cleanups.push(() => db2.$disconnect());
    const second = make(db2);
    const again = await second.handle(fixture("qemu-ipxe-bios-discover.hex"), src);
    expect(decodeRequest(again!.data).msg.yiaddr).toBe(ip);
    await new Promise((r) => setTimeout(r, 50)); // the sighting is recorded in the background
    expect(await db2.machine.count()).toBe(1);
  });
});
