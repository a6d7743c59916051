// Starts the netboot services on the provisioning network: DHCP (full or proxy) and TFTP for
// the iPXE binaries. The HTTP boot routes live on the API server (netboot/http/boot.ts).
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import { DhcpServer } from "./dhcp/server.js";
import { PrismaLeaseStore } from "./dhcp/lease-store-prisma.js";
import { PrismaMachineHooks } from "./dhcp/machines-prisma.js";
import { TftpServer } from "./tftp/index.js";

export interface Netboot {
  listeners: string[];
  stop(): Promise<void>;
}

export async function startNetboot(config: Config, db: Db, log: Logger): Promise<Netboot> {
  const address = config.netbootAddress;
  if (!address) return { listeners: [], stop: async () => {} };
  const stops: (() => Promise<void>)[] = [];
  const listeners: string[] = [];
  try {
    const tftp = new TftpServer({
      root: config.ipxeDir,
      host: address,
      port: config.tftpPort,
      log: log.child({ component: "tftp" }),
    });
    const t = await tftp.listen();
    stops.push(() => tftp.close());
    listeners.push(`tftp:${t.address}:${t.port}`);

    if (config.dhcpMode !== "off") {
      const [first, last] = (config.dhcpRange ?? "-").split("-");
      const dhcp = new DhcpServer({
        mode: config.dhcpMode,
        serverAddress: address,
        port: config.dhcpPort,
        subnets: config.dhcpSubnet
          ? [
              {
                cidr: config.dhcpSubnet,
                ...(first && last ? { range: { start: first, end: last } } : {}),
                ...(config.dhcpRouter ? { routers: [config.dhcpRouter] } : {}),
                leaseSeconds: config.dhcpLeaseSeconds,
              },
            ]
          : [],
        boot: {
          biosFile: "undionly.kpxe",
          efiX64File: "snponly.efi",
          httpBootUrl: () => `${config.bootUrl}/boot/ipxe-bin/ipxe.efi`,
          // The MAC is put in by us, not left to iPXE's ${net0/mac}: the DHCP server knows it.
          ipxeScriptUrl: (req) => `${config.bootUrl}/boot/ipxe?mac=${req.mac}`,
        },
        leases: new PrismaLeaseStore(db),
        machines: new PrismaMachineHooks(db),
        logger: log.child({ component: "dhcp" }),
      });
      await dhcp.start();
      stops.push(() => dhcp.stop());
      listeners.push(`dhcp:${config.dhcpMode}:${address}:${dhcp.ports().join(",")}`);
    }
    return {
      listeners,
      stop: async () => {
        for (const s of stops.reverse()) await s().catch(() => undefined);
      },
    };
  } catch (err) {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    throw err;
  }
}
