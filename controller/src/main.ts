#!/usr/bin/env node
// weft-controller: the only place that reads flags, environment and the config file, and the
// only place that exits the process.
import { Command } from "commander";
import { loadConfig } from "./config.js";
import { startDaemon } from "./daemon.js";
import { WeftError } from "./errors.js";
import { createLogger } from "./log.js";
import { VERSION } from "./version.js";

const program = new Command("weft-controller")
  .description("Weft controller: netboot services, REST API, lifecycle and job runner")
  .version(VERSION)
  .option("-c, --config <file>", "YAML or JSON config file (env WEFT_CONFIG)")
  .option("--data-dir <dir>", "state directory (env WEFT_DATA_DIR; default /var/lib/weft)")
  .option("--database-url <url>", "database URL (env WEFT_DATABASE_URL; default file:<data-dir>/weft.db)")
  .option("--listen <host:port>", "TCP address of the API (env WEFT_LISTEN; default 127.0.0.1:7480)")
  .option("--socket <path>", "unix socket of the API (env WEFT_SOCKET; default /run/weft/weft.sock)")
  .option("--token-file <path>", "where the admin token is written (env WEFT_TOKEN_FILE)")
  .option("--log-level <level>", "trace|debug|info|warn|error (env WEFT_LOG_LEVEL)")
  .option("--images-dir <dir>", "imported images (env WEFT_IMAGES_DIR; default <data-dir>/images)")
  .option("--boot-url <url>", "URL machines reach the controller at (env WEFT_BOOT_URL)")
  .option(
    "--netboot-address <ip>",
    "this controller's address on the provisioning network; enables DHCP and TFTP",
  )
  .option("--dhcp-mode <mode>", "full|proxy|off (env WEFT_DHCP_MODE; default full)")
  .option("--dhcp-subnet <cidr>", "provisioning subnet, e.g. 10.77.0.0/24 (env WEFT_DHCP_SUBNET)")
  .option("--dhcp-range <first-last>", "dynamic pool (env WEFT_DHCP_RANGE)")
  .option("--dhcp-router <ip>", "router handed to clients (env WEFT_DHCP_ROUTER)")
  .option("--tftp-port <port>", "TFTP port (env WEFT_TFTP_PORT; default 69)")
  .option(
    "--state-timeouts <state=seconds,...>",
    "deadlines of the waiting states, e.g. rebooting=900 (env WEFT_STATE_TIMEOUTS)",
  )
  .option(
    "--maintenance-cmdline <args>",
    'kernel arguments of the maintenance OS (env WEFT_MAINTENANCE_CMDLINE; default "console=ttyS0,115200 quiet")',
  )
  .option(
    "--host-kernel-args <args>",
    "kernel arguments added to installed hosts' own, e.g. tsc=reliable (env WEFT_HOST_KERNEL_ARGS)",
  )
  .option("--rotate-admin-token", "replace the admin token (the old one stops working) and write the new one")
  .showHelpAfterError();

async function main(): Promise<void> {
  program.parse();
  const o = program.opts<Record<string, string | boolean | undefined>>();
  let config;
  try {
    config = loadConfig({
      file: (o["config"] as string | undefined) ?? process.env["WEFT_CONFIG"],
      env: process.env,
      flags: {
        dataDir: o["dataDir"],
        databaseUrl: o["databaseUrl"],
        listen: o["listen"],
        socket: o["socket"],
        tokenFile: o["tokenFile"],
        logLevel: o["logLevel"],
        imagesDir: o["imagesDir"],
        bootUrl: o["bootUrl"],
        netbootAddress: o["netbootAddress"],
        dhcpMode: o["dhcpMode"],
        dhcpSubnet: o["dhcpSubnet"],
        dhcpRange: o["dhcpRange"],
        dhcpRouter: o["dhcpRouter"],
        tftpPort: o["tftpPort"],
        stateTimeouts: o["stateTimeouts"],
        maintenanceCmdline: o["maintenanceCmdline"],
        hostKernelArgs: o["hostKernelArgs"],
      },
    });
  } catch (err) {
    printFatal(err);
    process.exit(2);
  }
  const log = createLogger(config.logLevel);
  let daemon;
  try {
    daemon = await startDaemon(config, log, { rotateAdminToken: o["rotateAdminToken"] === true });
  } catch (err) {
    log.fatal({ err }, "controller failed to start");
    printFatal(err);
    process.exit(1);
  }
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) process.exit(130); // a second signal: stop waiting
    signalled = true;
    log.info({ signal: sig }, "shutting down");
    void daemon.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // A bug in one request must not take the whole controller down; it is logged loudly.
  process.on("unhandledRejection", (err) => log.error({ err }, "unhandled rejection"));
}

function printFatal(err: unknown): void {
  if (err instanceof WeftError) {
    process.stderr.write(`weft-controller: ${err.message}\n`);
    if (Array.isArray(err.details))
      for (const d of err.details) process.stderr.write(`  ${JSON.stringify(d)}\n`);
  } else {
    process.stderr.write(`weft-controller: ${(err as Error).stack ?? String(err)}\n`);
  }
}

await main();
