// The daemons a lab runs inside its namespace, each recorded by PID in the state file:
//
// - ra: dnsmasq in router-advertisement-only mode (no DNS, no DHCP: it binds no UDP port, so
//   the controller's DHCP server owns port 67). iPXE configures IPv6 alongside DHCPv4 and,
//   on a segment with no router advertisement, waits 16 s before it goes on with IPv4 alone.
//   The advertisement carries the lab's unique-local prefix with router lifetime 0: servers
//   get an address, nobody gets a default route.
//
// - virtlogd + libvirtd: the lab's own libvirt daemon. It runs in the lab's network
//   namespace (entered with nsenter, which leaves /sys and the cgroups alone, unlike
//   `ip netns exec`) and in a private mount namespace where directories of the state
//   directory are mounted over /etc/libvirt, /run, /var/lib/libvirt, /var/cache/libvirt and
//   /var/log/libvirt. So it shares nothing with a system libvirtd or another lab: its own
//   configuration, domain definitions, PID files and sockets. Its client socket lives in the
//   state directory (unix_sock_dir), reachable from every namespace by the same path.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { NETWORK, labPaths, libvirtUri, type LabConfig } from "./config.js";
import { LabError } from "./errors.js";
import type { LabSystem } from "./exec.js";
import { recordProcess, stopProcess, type ProcessRecord } from "./procs.js";

function readPidFile(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function waitForPidFile(file: string, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = readPidFile(file);
    if (pid !== undefined || Date.now() > deadline) return pid;
    await sleep(100);
  }
}

function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

export async function startRouterAdvertiser(sys: LabSystem, config: LabConfig): Promise<ProcessRecord> {
  const paths = labPaths(config.stateDir);
  await sys.run("nsenter", [
    `--net=/run/netns/${config.netns}`,
    "dnsmasq",
    "--conf-file=/dev/null",
    "--port=0",
    `--interface=${config.bridge}`,
    "--bind-interfaces",
    `--pid-file=${paths.raPid}`,
    `--log-facility=${paths.raLog}`,
    "--enable-ra",
    `--ra-param=${config.bridge},10,0`,
    `--dhcp-range=${NETWORK.ipv6Net},ra-only,${NETWORK.ipv6Prefix}`,
  ]);
  const pid = await waitForPidFile(paths.raPid, 5_000);
  const rec = pid === undefined ? undefined : recordProcess(pid, "dnsmasq (router advertisements)");
  if (rec === undefined) {
    throw new LabError(
      "LAB_COMMAND_FAILED",
      `dnsmasq (router advertisements) did not start\n${tail(paths.raLog)}`,
    );
  }
  return rec;
}

/** Answers when the lab's libvirtd accepts connections. */
export async function libvirtResponds(sys: LabSystem, stateDir: string): Promise<boolean> {
  if (!existsSync(labPaths(stateDir).libvirt.socket)) return false;
  const r = await sys.run("virsh", ["-c", libvirtUri(stateDir), "version"], {
    timeoutMs: 10_000,
    allowFailure: true,
  });
  return !r.failed;
}

function writeLibvirtConfig(stateDir: string): void {
  const lv = labPaths(stateDir).libvirt;
  for (const d of [lv.etc, `${lv.etc}/qemu`, lv.run, lv.lib, lv.cache, lv.log, lv.sock])
    mkdirSync(d, { recursive: true });
  // Only what differs from libvirt's defaults; the rest of /etc/libvirt is not needed.
  writeFileSync(
    `${lv.etc}/libvirtd.conf`,
    [
      "# weft lab: written by weft-lab up",
      `unix_sock_dir = "${lv.sock}"`,
      `unix_sock_rw_perms = "0700"`,
      `log_outputs = "3:file:${lv.libvirtdLog}"`,
      "",
    ].join("\n"),
  );
  writeFileSync(
    `${lv.etc}/virtlogd.conf`,
    ["# weft lab: written by weft-lab up", `log_outputs = "3:file:${lv.virtlogdLog}"`, ""].join("\n"),
  );
  // QEMU runs as root: the disks and console logs sit in the lab's state directory, which
  // need not be reachable by libvirt's unprivileged user.
  writeFileSync(
    `${lv.etc}/qemu.conf`,
    ["# weft lab: written by weft-lab up", 'user = "root"', 'group = "root"', ""].join("\n"),
  );
}

// Runs inside the new mount namespace; positional parameters avoid any quoting of paths.
const LIBVIRT_START_SCRIPT = [
  "set -e",
  'mount --bind "$1" /etc/libvirt',
  'mount --bind "$2" /run',
  'mount --bind "$3" /var/lib/libvirt',
  'mount --bind "$4" /var/cache/libvirt',
  'mount --bind "$5" /var/log/libvirt',
  'virtlogd -d -p "$6"',
  'libvirtd -d -p "$7"',
].join("\n");

export async function startLibvirt(
  sys: LabSystem,
  config: LabConfig,
): Promise<{ virtlogd: ProcessRecord; libvirtd: ProcessRecord }> {
  const lv = labPaths(config.stateDir).libvirt;
  writeLibvirtConfig(config.stateDir);
  for (const f of [lv.libvirtdPid, lv.virtlogdPid]) writeFileSync(f, "");
  await sys.run(
    "nsenter",
    [
      `--net=/run/netns/${config.netns}`,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "sh",
      "-c",
      LIBVIRT_START_SCRIPT,
      "weft-lab-libvirt",
      lv.etc,
      lv.run,
      lv.lib,
      lv.cache,
      lv.log,
      lv.virtlogdPid,
      lv.libvirtdPid,
    ],
    { timeoutMs: 30_000 },
  );
  const vpid = await waitForPidFile(lv.virtlogdPid, 5_000);
  const lpid = await waitForPidFile(lv.libvirtdPid, 10_000);
  const virtlogd = vpid === undefined ? undefined : recordProcess(vpid, "virtlogd");
  const libvirtd = lpid === undefined ? undefined : recordProcess(lpid, "libvirtd");
  if (virtlogd === undefined || libvirtd === undefined) {
    for (const r of [virtlogd, libvirtd]) if (r !== undefined) await stopProcess(r);
    throw new LabError(
      "LAB_COMMAND_FAILED",
      `the lab's libvirt daemons did not start\n${tail(lv.libvirtdLog)}\n${tail(lv.virtlogdLog)}`,
    );
  }
  const deadline = Date.now() + 20_000;
  while (!(await libvirtResponds(sys, config.stateDir))) {
    if (Date.now() > deadline) {
      await stopProcess(libvirtd);
      await stopProcess(virtlogd);
      throw new LabError(
        "LAB_COMMAND_FAILED",
        `libvirtd (pid ${libvirtd.pid}) does not answer on ${lv.socket}\n${tail(lv.libvirtdLog)}`,
      );
    }
    await sleep(200);
  }
  return { virtlogd, libvirtd };
}
