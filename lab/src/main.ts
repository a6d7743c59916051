#!/usr/bin/env node
// weft-lab: the virtual lab. The only place that reads flags and the environment and
// decides the exit code. Exit codes: 0 done, 1 failed, 2 usage error or unknown name,
// 3 a Debian package is missing.
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { autoVcpus, DEFAULT_CONFIG, DEFAULT_STATE_DIR, type LabConfig } from "./config.js";
import { LabError } from "./errors.js";
import { realSystem } from "./exec.js";
import { runConsole } from "./commands/console.js";
import { runDown } from "./commands/down.js";
import { runStatus } from "./commands/status.js";
import { runTimeline } from "./commands/timeline.js";
import { runUp } from "./commands/up.js";
import type { AccelRequest } from "./accel.js";

function int(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError("not a whole number");
  return n;
}

const program = new Command("weft-lab")
  .description(
    "The Weft virtual lab: a network namespace with a provisioning bridge, a libvirt daemon and VM servers",
  )
  .option("--state-dir <dir>", `lab state directory (env WEFT_LAB_DIR, default ${DEFAULT_STATE_DIR})`)
  .option("--netns <name>", "network namespace name", DEFAULT_CONFIG.netns)
  .option("--bridge <name>", "provisioning bridge name", DEFAULT_CONFIG.bridge)
  .showHelpAfterError()
  .exitOverride();

function labConfig(): LabConfig {
  const g = program.opts<{ stateDir?: string; netns: string; bridge: string }>();
  return {
    stateDir: g.stateDir ?? process.env["WEFT_LAB_DIR"] ?? DEFAULT_STATE_DIR,
    netns: g.netns,
    bridge: g.bridge,
  };
}

program
  .command("up")
  .description("build the lab, or repair what is missing of it")
  .option("--servers <n>", "number of servers srv1..srvN", int, 2)
  .option("--memory <MiB>", "memory per server", int, 1024)
  .option(
    "--cpus <n|auto>",
    "vCPUs per server; auto shares the machine's cores among the servers, 1 to 2 each",
    (v: string) => (v === "auto" ? v : int(v)),
    "auto",
  )
  .option("--disk-size <GiB>", "blank disk per server (sparse qcow2)", int, 8)
  .addOption(
    new Option("--accel <accel>", "accelerator: auto probes KVM with a stock guest")
      .choices(["auto", "kvm", "tcg"])
      .default("auto"),
  )
  .addOption(new Option("--firmware <fw>", "server firmware").choices(["bios", "uefi"]).default("bios"))
  .option(
    "--controller <path>",
    "controller entry to start in the namespace",
    fileURLToPath(new URL("../../controller/dist/main.js", import.meta.url)),
  )
  .option(
    "--image-cache <dir>",
    "built boot images to import (env WEFT_IMAGES_CACHE)",
    process.env["WEFT_IMAGES_CACHE"] ?? "/var/cache/weft/images",
  )
  .action(
    async (o: {
      servers: number;
      memory: number;
      cpus: number | "auto";
      diskSize: number;
      accel: AccelRequest;
      firmware: "bios" | "uefi";
      controller: string;
      imageCache: string;
    }) => {
      await runUp(realSystem, labConfig(), {
        servers: o.servers,
        memoryMiB: o.memory,
        vcpus: o.cpus === "auto" ? autoVcpus(o.servers, availableParallelism()) : o.cpus,
        diskGiB: o.diskSize,
        accel: o.accel,
        firmware: o.firmware,
        controllerEntry: o.controller,
        imageCache: o.imageCache,
      });
    },
  );

program
  .command("down")
  .description("remove the lab: servers, disks, daemons, bridge, namespace")
  .option("--purge", "also delete logs, the accelerator cache and the state directory", false)
  .action(async (o: { purge: boolean }) => {
    await runDown(realSystem, labConfig(), o.purge);
  });

program
  .command("status")
  .description("power, MAC and last console lines of each server")
  .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
  .option("--lines <n>", "console lines per server", int, 3)
  .action(async (o: { output: "table" | "json"; lines: number }) => {
    await runStatus(realSystem, labConfig(), o.output, o.lines);
  });

program
  .command("timeline")
  .description("each server's boot since its last power-on: DHCP, boot script, kernel, initrd, agent up")
  .addOption(new Option("-o, --output <format>", "output format").choices(["table", "json"]).default("table"))
  .action(async (o: { output: "table" | "json" }) => {
    await runTimeline(labConfig(), o.output);
  });

program
  .command("console")
  .description("print a server's serial console")
  .argument("<server>", "server name, e.g. srv1")
  .option("-f, --follow", "keep printing new output until interrupted", false)
  .option("--lines <n>", "lines to print first", int, 40)
  .action(async (server: string, o: { follow: boolean; lines: number }) => {
    const stop = new AbortController();
    process.once("SIGINT", () => stop.abort());
    process.once("SIGTERM", () => stop.abort());
    await runConsole(labConfig(), server, { follow: o.follow, lines: o.lines, signal: stop.signal });
  });

function exitCodeOf(err: LabError): number {
  if (err.code === "LAB_BAD_INPUT" || err.code === "LAB_UNKNOWN_SERVER") return 2;
  if (err.code === "LAB_MISSING_TOOL") return 3;
  return 1;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof LabError) {
    console.error(`weft-lab: ${err.message}`);
    if (err.hint !== undefined) console.error(`weft-lab: ${err.hint}`);
    process.exitCode = exitCodeOf(err);
  } else {
    console.error(`weft-lab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  }
}
