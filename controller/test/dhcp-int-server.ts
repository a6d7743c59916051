// Entry point the DHCP integration test and benchmark run inside a network namespace:
//   node --import tsx controller/test/dhcp-int-server.ts '<json config>'
// Prints one JSON line {"ready":true,"ports":[...]} on stdout when listening; logs go to
// stderr as JSON. SIGTERM stops it cleanly.
import { pino } from "pino";
import { PrismaLeaseStore } from "../src/netboot/dhcp/lease-store-prisma.js";
import { MemoryLeaseStore } from "../src/netboot/dhcp/lease-store.js";
import { PrismaMachineHooks } from "../src/netboot/dhcp/machines-prisma.js";
import { DhcpServer, type DhcpSubnetConfig } from "../src/netboot/dhcp/server.js";
import { defaultMigrationsDir, openDb } from "../src/store/db.js";
import { migrateSqlite } from "../src/store/migrate.js";

interface Config {
  mode: "full" | "proxy";
  serverAddress: string;
  /** SQLite URL, or absent for the in-memory store. */
  db?: string;
  subnets: DhcpSubnetConfig[];
  port?: number;
  proxyPort?: number;
  logLevel?: string;
}

const cfg = JSON.parse(process.argv[2] ?? "{}") as Config;
const logger = pino({ level: cfg.logLevel ?? "info" }, pino.destination(2));
const db = cfg.db ? (migrateSqlite(cfg.db, defaultMigrationsDir), openDb(cfg.db)) : undefined;
const http = `http://${cfg.serverAddress}:8080`;
const server = new DhcpServer({
  mode: cfg.mode,
  serverAddress: cfg.serverAddress,
  subnets: cfg.subnets,
  ...(cfg.port !== undefined ? { port: cfg.port } : {}),
  ...(cfg.proxyPort !== undefined ? { proxyPort: cfg.proxyPort } : {}),
  boot: {
    biosFile: "undionly.kpxe",
    efiX64File: "ipxe.efi",
    httpBootUrl: () => `${http}/boot/ipxe.efi`,
    ipxeScriptUrl: () => `${http}/boot/ipxe?mac=\${net0/mac}`,
  },
  leases: db ? new PrismaLeaseStore(db) : new MemoryLeaseStore(),
  ...(db ? { machines: new PrismaMachineHooks(db) } : {}),
  logger,
});
await server.start();
process.stdout.write(`${JSON.stringify({ ready: true, ports: server.ports() })}\n`);
process.on("SIGTERM", () => {
  void (async () => {
    await server.stop();
    await db?.$disconnect();
    process.exit(0);
  })();
});
