// DHCP client scenarios run inside a network namespace by the integration test and the
// benchmark:  node --import tsx controller/test/dhcp-int-client.ts <scenario> '<json args>'
// Prints one JSON line with the outcome.
import { MessageType, messageTypeName, Opt, write } from "../src/netboot/dhcp/options.js";
import { DhcpTestClient } from "./dhcp-client.js";

const [scenario, argJson] = process.argv.slice(2);
const args = JSON.parse(argJson ?? "{}") as Record<string, unknown>;
const client = await DhcpTestClient.open();
const typeName = (t: number | undefined) => (t === undefined ? "none" : (messageTypeName[t] ?? String(t)));

function mac(i: number, prefix = 0x02): string {
  const b = Buffer.alloc(6);
  b[0] = prefix;
  b.writeUInt32BE(i >>> 0, 2);
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

async function main(): Promise<unknown> {
  switch (scenario) {
    case "request": {
      // INIT-REBOOT REQUEST for an address (RFC 2131 section 4.3.2).
      const r = await client.exchange({
        type: MessageType.Request,
        mac: String(args.mac),
        options: [[Opt.RequestedIp, write.ip(String(args.ip))]],
      });
      return { type: typeName(r?.opts.messageType), yiaddr: r?.msg.yiaddr };
    }
    case "proxy": {
      // A UEFI PXE client beside another DHCP server: the proxy's OFFER on port 67, then the
      // REQUEST to the proxy's port 4011 once the client has an address (PXE 2.1 section 2.2.4).
      const m = String(args.mac);
      const pxe: [number, Buffer][] = [
        [Opt.VendorClass, write.str("PXEClient:Arch:00007:UNDI:003000")],
        [Opt.ClientArch, Buffer.from([0, 7])],
      ];
      const offer = await client.exchange({ type: MessageType.Discover, mac: m, options: pxe });
      const server = offer?.opts.serverId ?? "0.0.0.0";
      const ack = await client.exchange(
        { type: MessageType.Request, mac: m, ciaddr: String(args.ciaddr), flags: 0, options: pxe },
        { to: { address: server, port: 4011 } },
      );
      const file = (r: typeof offer) => r?.msg.options.get(Opt.BootFile)?.toString();
      return {
        offer: typeName(offer?.opts.messageType),
        offerYiaddr: offer?.msg.yiaddr,
        offerFile: file(offer),
        offerVendorClass: offer?.opts.vendorClass,
        ack: typeName(ack?.opts.messageType),
        ackFile: file(ack),
      };
    }
    case "lease": {
      const r = await client.lease(String(args.mac));
      return { type: typeName(r?.ack.opts.messageType), ip: r?.ack.msg.yiaddr };
    }
    case "decline": {
      const m = String(args.mac);
      const first = await client.lease(m);
      const ip1 = first?.ack.msg.yiaddr;
      client.send({
        type: MessageType.Decline,
        mac: m,
        options: [
          [Opt.RequestedIp, write.ip(ip1 ?? "0.0.0.0")],
          [Opt.ServerId, write.ip(first?.ack.opts.serverId ?? "0.0.0.0")],
        ],
      });
      await new Promise((r) => setTimeout(r, 300));
      const second = await client.lease(m);
      return { ip1, ip2: second?.ack.msg.yiaddr, type2: typeName(second?.ack.opts.messageType) };
    }
    case "release": {
      const m = String(args.mac);
      const first = await client.lease(m);
      const ip = first?.ack.msg.yiaddr ?? "0.0.0.0";
      client.send({
        type: MessageType.Release,
        mac: m,
        ciaddr: ip,
        options: [[Opt.ServerId, write.ip(first?.ack.opts.serverId ?? "0.0.0.0")]],
      });
      await new Promise((r) => setTimeout(r, 300));
      return { ip };
    }
    case "load": {
      // count exchanges, `concurrency` in flight, distinct MACs, stop at `seconds`.
      const count = Number(args.count ?? 1000);
      const concurrency = Number(args.concurrency ?? 32);
      const deadline = Date.now() + Number(args.seconds ?? 60) * 1000;
      const base = Number(args.base ?? 0);
      let next = 0;
      let ok = 0;
      let failed = 0;
      const lat: number[] = [];
      const t0 = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count && Date.now() < deadline) {
            const i = next++;
            const s = process.hrtime.bigint();
            const r = await client.lease(mac(base + i), { timeoutMs: 2000, tries: 2 });
            if (r?.ack.opts.messageType === MessageType.Ack) {
              ok++;
              lat.push(Number(process.hrtime.bigint() - s) / 1e6);
            } else failed++;
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      lat.sort((a, b) => a - b);
      const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
      return { ok, failed, seconds, rate: ok / seconds, p50ms: pct(0.5), p99ms: pct(0.99) };
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

const out = await main();
process.stdout.write(`${JSON.stringify(out)}\n`);
client.close();
process.exit(0);
