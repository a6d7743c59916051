import { describe, expect, it } from "vitest";
import {
  decodeRequest,
  FLAG_BROADCAST,
  type ClientOptions,
  type DhcpMessage,
} from "../src/netboot/dhcp/codec.js";
import { MemoryLeaseStore } from "../src/netboot/dhcp/lease-store.js";
import type { MachineHooks, PxeClientInfo } from "../src/netboot/dhcp/machines.js";
import { MessageType, Opt, write } from "../src/netboot/dhcp/options.js";
import {
  DhcpServer,
  type DhcpServerOptions,
  type PacketSource,
  type Reply,
} from "../src/netboot/dhcp/server.js";
import { clientPacket, fixture, recordingLogger } from "./dhcp-helpers.js";

const SERVER = "10.9.0.1";
const boot = {
  biosFile: "undionly.kpxe",
  efiX64File: "ipxe.efi",
  httpBootUrl: () => `http://${SERVER}:8080/boot/ipxe.efi`,
  ipxeScriptUrl: () => `http://${SERVER}:8080/boot/ipxe?mac=\${net0/mac}`,
};

function fakeMachines(known: string[] = []): MachineHooks & { seen: PxeClientInfo[] } {
  const seen: PxeClientInfo[] = [];
  return { seen, onPxeClient: async (i) => void seen.push(i), isKnown: async (mac) => known.includes(mac) };
}

let clock = new Date("2026-11-25T12:00:00Z");
function setup(over: Partial<DhcpServerOptions> = {}) {
  const logger = recordingLogger();
  const leases = new MemoryLeaseStore();
  const machines = fakeMachines(["52:54:00:00:00:99"]);
  const server = new DhcpServer({
    mode: "full",
    serverAddress: SERVER,
    subnets: [
      {
        cidr: "10.9.0.0/24",
        range: { start: "10.9.0.100", end: "10.9.0.199" },
        routers: [SERVER],
        dnsServers: [SERVER],
        domainName: "lab.weft",
        reservations: [{ mac: "52:54:00:00:00:77", ip: "10.9.0.7", hostname: "srv7" }],
      },
      { cidr: "10.20.0.0/24", range: { start: "10.20.0.10", end: "10.20.0.20" } },
    ],
    boot,
    leases,
    machines,
    logger,
    clock: () => clock,
    ...over,
  });
  return { server, leases, logger, machines };
}

const from = { address: "0.0.0.0", port: 68 };
type R = { reply: Reply; msg: DhcpMessage; opts: ClientOptions };
async function send(server: DhcpServer, pkt: Buffer, src: PacketSource = from): Promise<R | undefined> {
  const reply = await server.handle(pkt, src);
  if (!reply) return undefined;
  const { msg, opts } = decodeRequest(reply.data);
  return { reply, msg, opts };
}

const mac = (n: number) => `52:54:00:00:01:${n.toString(16).padStart(2, "0")}`;
const discover = (m: string, extra: [number, Buffer][] = []) =>
  clientPacket({ type: MessageType.Discover, mac: m, options: extra });
const requestSel = (m: string, ip: string, server = SERVER) =>
  clientPacket({
    type: MessageType.Request,
    mac: m,
    options: [
      [Opt.RequestedIp, write.ip(ip)],
      [Opt.ServerId, write.ip(server)],
    ],
  });

async function lease(server: DhcpServer, m: string): Promise<string> {
  const offer = await send(server, discover(m));
  const ack = await send(server, requestSel(m, offer!.msg.yiaddr));
  expect(ack?.opts.messageType).toBe(MessageType.Ack);
  return ack!.msg.yiaddr;
}

describe("DHCP server, full mode", () => {
  it("offers a pool address with the subnet's options, then ACKs it (RFC 2131 4.3.1, 4.3.2)", async () => {
    const { server, leases } = setup();
    const offer = await send(server, discover(mac(1)));
    expect(offer?.opts.messageType).toBe(MessageType.Offer);
    expect(offer?.msg.yiaddr).toBe("10.9.0.100");
    expect(offer?.opts).toMatchObject({ serverId: SERVER, leaseTime: 3600 });
    expect(offer?.msg.options.get(Opt.SubnetMask)).toEqual(write.ip("255.255.255.0"));
    expect((await leases.get("10.9.0.100"))?.state).toBe("offered");
    const ack = await send(server, requestSel(mac(1), "10.9.0.100"));
    expect(ack?.opts.messageType).toBe(MessageType.Ack);
    expect((await leases.get("10.9.0.100"))?.state).toBe("bound");
  });

  it("gives a second client another address, and the first the same one again", async () => {
    const { server } = setup();
    const a = await lease(server, mac(1));
    const b = await lease(server, mac(2));
    expect(b).not.toBe(a);
    expect((await send(server, discover(mac(1))))?.msg.yiaddr).toBe(a);
  });

  it("hands a reservation its address and host name, and keeps it out of the pool", async () => {
    const { server } = setup();
    const offer = await send(server, discover("52:54:00:00:00:77"));
    expect(offer?.msg.yiaddr).toBe("10.9.0.7");
    expect(offer?.opts.hostname).toBe("srv7");
    const ack = await send(server, requestSel(mac(5), "10.9.0.7"));
    expect(ack?.opts.messageType).toBe(MessageType.Nak);
  });

  it("NAKs an address on another network, or held by another client, and broadcasts the NAK", async () => {
    const { server } = setup();
    const a = await lease(server, mac(1));
    const initReboot = (ip: string) =>
      clientPacket({ type: MessageType.Request, mac: mac(2), options: [[Opt.RequestedIp, write.ip(ip)]] });
    const foreign = await send(server, initReboot("192.168.1.50"));
    expect(foreign?.opts.messageType).toBe(MessageType.Nak);
    expect(foreign?.reply.address).toBe("255.255.255.255");
    expect((await send(server, initReboot(a)))?.opts.messageType).toBe(MessageType.Nak);
    // A free pool address asked for after a reboot is granted (authoritative server).
    expect((await send(server, initReboot("10.9.0.150")))?.opts.messageType).toBe(MessageType.Ack);
  });

  it("stays silent when the client chose another server, and frees its offer (RFC 2131 4.3.2)", async () => {
    const { server, leases, logger } = setup();
    const offer = await send(server, discover(mac(1)));
    expect(await send(server, requestSel(mac(1), offer!.msg.yiaddr, "10.9.0.254"))).toBeUndefined();
    expect((await leases.get(offer!.msg.yiaddr))?.state).toBe("expired");
    expect(logger.lines.some((l) => l.msg === "dhcp packet refused" && l.mac === mac(1) && l.xid)).toBe(true);
  });

  it("renews by unicast to ciaddr and rebinds, extending the lease", async () => {
    const { server, leases } = setup();
    const a = await lease(server, mac(1));
    clock = new Date(clock.getTime() + 1800_000);
    const renew = await send(server, clientPacket({ type: MessageType.Request, mac: mac(1), ciaddr: a }), {
      address: a,
      port: 68,
    });
    expect(renew?.opts.messageType).toBe(MessageType.Ack);
    expect(renew?.reply).toMatchObject({ address: a, port: 68 });
    expect(renew?.msg.ciaddr).toBe(a);
    expect((await leases.get(a))?.expiresAt.getTime()).toBe(clock.getTime() + 3600_000);
  });

  it("DECLINE keeps the address out of the pool for a while; RELEASE gives it back", async () => {
    const { server, leases } = setup();
    const a = await lease(server, mac(1));
    await send(
      server,
      clientPacket({
        type: MessageType.Decline,
        mac: mac(1),
        options: [
          [Opt.RequestedIp, write.ip(a)],
          [Opt.ServerId, write.ip(SERVER)],
        ],
      }),
    );
    expect((await leases.get(a))?.state).toBe("declined");
    const next = await send(server, discover(mac(1)));
    expect(next?.msg.yiaddr).not.toBe(a);
    const b = next!.msg.yiaddr;
    await send(server, requestSel(mac(1), b));
    await send(
      server,
      clientPacket({
        type: MessageType.Release,
        mac: mac(1),
        ciaddr: b,
        options: [[Opt.ServerId, write.ip(SERVER)]],
      }),
      { address: b, port: 68 },
    );
    expect((await leases.get(b))?.state).toBe("released");
    expect((await send(server, discover(mac(1))))?.msg.yiaddr).toBe(b);
  });

  it("answers INFORM with an ACK without address or lease time, to ciaddr (RFC 2131 4.3.5)", async () => {
    const { server } = setup();
    const r = await send(
      server,
      clientPacket({ type: MessageType.Inform, mac: mac(3), ciaddr: "10.9.0.40" }),
      {
        address: "10.9.0.40",
        port: 68,
      },
    );
    expect(r?.opts.messageType).toBe(MessageType.Ack);
    expect(r?.msg.yiaddr).toBe("0.0.0.0");
    expect(r?.opts.leaseTime).toBeUndefined();
    expect(r?.reply.address).toBe("10.9.0.40");
  });

  it("serves a relayed client from the giaddr's subnet and answers the relay on port 67", async () => {
    const { server } = setup();
    const relay82 = Buffer.from([1, 3, 0x61, 0x62, 0x63]);
    const pkt = clientPacket({
      type: MessageType.Discover,
      mac: mac(4),
      giaddr: "10.20.0.1",
      options: [[Opt.RelayAgentInfo, relay82]],
    });
    const r = await send(server, pkt, { address: "10.20.0.1", port: 67 });
    expect(r?.msg.yiaddr).toBe("10.20.0.10");
    expect(r?.reply).toMatchObject({ address: "10.20.0.1", port: 67 });
    expect(r?.opts.relayAgentInfo).toEqual(relay82);
    const unserved = clientPacket({ type: MessageType.Discover, mac: mac(4), giaddr: "172.16.0.1" });
    expect(await send(server, unserved, { address: "172.16.0.1", port: 67 })).toBeUndefined();
  });

  it("ignores unrelayed packets from outside the served subnet (no SO_BINDTODEVICE)", async () => {
    const { server } = setup();
    expect(await send(server, discover(mac(1)), { address: "192.168.5.5", port: 68 })).toBeUndefined();
  });

  it("broadcasts when the broadcast flag is set or the client has no address yet", async () => {
    const { server } = setup();
    const r = await send(
      server,
      clientPacket({ type: MessageType.Discover, mac: mac(1), flags: FLAG_BROADCAST }),
    );
    expect(r?.reply).toMatchObject({ address: "255.255.255.255", port: 68 });
    expect(r?.msg.flags).toBe(FLAG_BROADCAST);
  });

  it("never hands one address to two clients under concurrent DISCOVERs, two servers on one store", async () => {
    const a = setup();
    const b = setup({ leases: a.leases });
    const macs = Array.from({ length: 80 }, (_, i) => mac(i));
    const offers = await Promise.all(macs.map((m, i) => send(i % 2 ? a.server : b.server, discover(m))));
    const ips = offers.map((o) => o?.msg.yiaddr).filter((x): x is string => x !== undefined);
    expect(ips).toHaveLength(80);
    expect(new Set(ips).size).toBe(80);
  });

  it("says so when the pool is exhausted", async () => {
    const { server, logger } = setup();
    const relayed = (n: number) =>
      clientPacket({ type: MessageType.Discover, mac: mac(n), giaddr: "10.20.0.1" });
    for (let i = 0; i < 11; i++) expect(await send(server, relayed(i))).toBeDefined();
    expect(await send(server, relayed(11))).toBeUndefined();
    expect(logger.lines.at(-1)).toMatchObject({ reason: "no free address in 10.20.0.0/24", mac: mac(11) });
  });
});

describe("DHCP server: boot options by client", () => {
  it.each([
    ["qemu-ipxe-bios-discover.hex", `http://${SERVER}:8080/boot/ipxe?mac=\${net0/mac}`, "PXEClient", SERVER],
    ["qemu-ovmf-pxe-discover.hex", "ipxe.efi", undefined, SERVER],
    ["qemu-ovmf-httpboot-discover.hex", `http://${SERVER}:8080/boot/ipxe.efi`, "HTTPClient", undefined],
  ])("%s gets %s", async (name, file, vendorClass, tftp) => {
    const { server, machines } = setup();
    const r = await send(server, fixture(name));
    expect(r?.msg.options.get(Opt.BootFile)?.toString()).toBe(file);
    expect(r?.opts.vendorClass).toBe(vendorClass);
    expect(r?.msg.options.get(Opt.TftpServer)?.toString()).toBe(tftp);
    expect(machines.seen).toHaveLength(1);
    expect(machines.seen[0]?.uuid).toBe("8d3c6f1a-2b4e-4c5d-9e6f-0a1b2c3d4e5f");
  });

  it("gives iPXE a next-server with its script, so it sends no ProxyDHCPREQUEST to port 4011", async () => {
    const { server } = setup();
    const r = await send(server, fixture("qemu-ipxe-bios-discover.hex"));
    expect(r?.opts.vendorClass).toBe("PXEClient");
    expect(r?.msg.siaddr).toBe(SERVER);
    expect(r?.msg.options.get(Opt.BootFile)?.length).toBeGreaterThan(0);
  });

  it("gives a BIOS PXE ROM undionly.kpxe over TFTP without option 60", async () => {
    const { server } = setup();
    const r = await send(
      server,
      discover(mac(8), [
        [Opt.VendorClass, write.str("PXEClient:Arch:00000:UNDI:002001")],
        [Opt.ClientArch, Buffer.from([0, 0])],
      ]),
    );
    expect(r?.msg.file).toBe("undionly.kpxe");
    expect(r?.msg.siaddr).toBe(SERVER);
    expect(r?.opts.vendorClass).toBeUndefined();
  });

  it("fits a reply into the 548 octets every client takes, unless option 57 allows more", async () => {
    const { server } = setup();
    // A reserved PXE client (host name, domain, DNS) behind a relay whose 250 octets of
    // agent information must come back whole (RFC 3046 section 2.2).
    const relay = Buffer.alloc(250, 0x41);
    relay[0] = 1; // sub-option 1, circuit id
    relay[1] = 248;
    const pxe: [number, Buffer][] = [
      [Opt.VendorClass, write.str("PXEClient:Arch:00000:UNDI:002001")],
      [Opt.ClientArch, Buffer.from([0, 0])],
      [Opt.RelayAgentInfo, relay],
    ];
    const small = await send(server, discover("52:54:00:00:00:77", pxe));
    expect(small?.reply.data.length).toBeLessThanOrEqual(548);
    expect(small?.msg.yiaddr).toBe("10.9.0.7");
    expect(small?.msg.file).toBe("undionly.kpxe");
    expect(small?.msg.options.get(Opt.RelayAgentInfo)).toEqual(relay);
    expect(small?.opts.hostname).toBeUndefined(); // given up first
    const roomy = await send(
      server,
      discover("52:54:00:00:00:77", [...pxe, [Opt.MaxMessageSize, Buffer.from([0x05, 0xdc])]]),
    );
    expect(roomy?.reply.data.length).toBeGreaterThan(548);
    expect(roomy?.opts.hostname).toBe("srv7");
    expect(roomy?.msg.options.get(Opt.DomainName)?.toString()).toBe("lab.weft");
  });

  it("gives a plain client no boot options, and a known machine's OS the default ones", async () => {
    const { server, machines } = setup();
    const plain = await send(server, fixture("udhcpc-discover.hex"));
    expect(plain?.msg.options.has(Opt.BootFile)).toBe(false);
    const known = await send(server, discover("52:54:00:00:00:99"));
    expect(known?.msg.options.get(Opt.BootFile)?.toString()).toBe("undionly.kpxe");
    expect(machines.seen).toHaveLength(0);
  });
});

describe("DHCP server, proxy mode", () => {
  it("answers a PXE DISCOVER with boot options and no address, and its REQUEST on 4011", async () => {
    const { server } = setup({ mode: "proxy" });
    const r = await send(server, fixture("qemu-ovmf-pxe-discover.hex"));
    expect(r?.opts.messageType).toBe(MessageType.Offer);
    expect(r?.msg.yiaddr).toBe("0.0.0.0");
    expect(r?.opts.vendorClass).toBe("PXEClient");
    expect(r?.opts.vendorSpecific).toBeDefined();
    expect(r?.opts.leaseTime).toBeUndefined();
    expect(r?.msg.file).toBe("ipxe.efi");
    const req = clientPacket({
      type: MessageType.Request,
      mac: "52:54:00:12:34:57",
      ciaddr: "10.9.0.123",
      options: [
        [Opt.VendorClass, write.str("PXEClient:Arch:00007:UNDI:003000")],
        [Opt.ClientArch, Buffer.from([0, 7])],
      ],
    });
    const ack = await send(server, req, { address: "10.9.0.123", port: 68, localPort: 4011 });
    expect(ack?.opts.messageType).toBe(MessageType.Ack);
    expect(ack?.reply).toMatchObject({ address: "10.9.0.123", port: 68 });
  });

  it("ignores clients that are not PXE clients", async () => {
    const { server } = setup({ mode: "proxy" });
    expect(await send(server, fixture("dhclient-discover.hex"))).toBeUndefined();
  });
});

describe("DHCP server: bad input", () => {
  it("drops malformed packets with one log line and no throw", async () => {
    const { server, logger } = setup();
    expect(await server.handle(Buffer.from("hello"), from)).toBeUndefined();
    expect(logger.lines.at(-1)).toMatchObject({
      msg: "dhcp packet refused",
      reason: "malformed",
      code: "TRUNCATED",
    });
  });
});
