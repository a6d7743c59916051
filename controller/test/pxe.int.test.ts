// Real network boots from Weft: QEMU VMs (TCG) on a bridge in a namespace of its own get
// their address from Weft's DHCP and end in a kernel and a small initramfs that prints a
// marker on the serial console. One boots with QEMU's own iPXE ROM, which loads its iPXE
// script over HTTP; the other with OVMF's native UEFI PXE, which first loads iPXE
// (snponly.efi) over Weft's TFTP.
import type { ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, controllerMain, tempDir } from "./helpers/controller.js";
import { Netns, mustRun } from "./helpers/netns.js";

const BRIDGE = "weftpxe0";
const TAPS = ["weftpxet0", "weftpxet1"];
const MAC = "52:54:00:88:00:01";
const UEFI_MAC = "52:54:00:88:00:02";
let ns: Netns;
let dir: string;
let ctl: ChildProcess;
const vms: ChildProcess[] = [];
let log = "";
const socket = () => path.join(dir, "weft.sock");
const token = () => fs.readFileSync(path.join(dir, "admin.token"), "utf8").trim();

/** An artifact and its manifest, as boot-images writes them. */
function image(name: string, kind: string, format: string, file: string): string {
  const bytes = fs.readFileSync(file);
  const manifest = path.join(dir, `${name}.manifest.json`);
  fs.copyFileSync(file, path.join(dir, `${name}.bin`));
  fs.writeFileSync(
    manifest,
    JSON.stringify({
      schema: "weft.image/v1",
      name,
      kind,
      format,
      file: `${name}.bin`,
      size: bytes.length,
      sha256: crypto.createHash("sha256").update(bytes).digest("hex"),
    }),
  );
  return manifest;
}

/** A busybox initramfs whose init prints the marker and its kernel command line, then powers off. */
async function testInitramfs(): Promise<string> {
  const root = path.join(dir, "initramfs");
  fs.mkdirSync(path.join(root, "bin"), { recursive: true });
  fs.mkdirSync(path.join(root, "proc"));
  fs.copyFileSync("/bin/busybox", path.join(root, "bin/busybox"));
  fs.chmodSync(path.join(root, "bin/busybox"), 0o755);
  fs.writeFileSync(
    path.join(root, "init"),
    "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\necho WEFT-PXE-MARKER $(/bin/busybox cat /proc/cmdline)\n/bin/busybox poweroff -f\n",
    { mode: 0o755 },
  );
  const out = path.join(dir, "initrd.cpio.zst");
  await mustRun("sh", ["-c", `cd ${root} && find . | cpio -o -H newc 2>/dev/null | zstd -q -o ${out}`]);
  return out;
}

beforeAll(async () => {
  dir = tempDir("weft-pxe-");
  ns = await Netns.create("weft-pxe");
  await ns.addBridge(BRIDGE, "10.88.0.1/24");
  // Node cannot bind to a device: broadcast replies need this route (see LAB-FACTS).
  await ns.ip("route", "add", "255.255.255.255/32", "dev", BRIDGE);
  for (const tap of TAPS) {
    await ns.ip("tuntap", "add", "dev", tap, "mode", "tap");
    await ns.ip("link", "set", tap, "master", BRIDGE);
    await ns.ip("link", "set", tap, "up");
  }

  const kernel = fs.readdirSync("/boot").find((f) => f.startsWith("vmlinuz-"));
  if (!kernel) throw new Error("no kernel in /boot: install linux-image-amd64 (scripts/setup.sh does)");
  const manifests = [
    image("maintenance-kernel", "kernel", "bzImage", path.join("/boot", kernel)),
    image("maintenance-initrd", "initrd", "cpio.zst", await testInitramfs()),
  ];

  ctl = ns.spawn(process.execPath, [
    controllerMain,
    ...["--data-dir", dir, "--socket", socket(), "--listen", "10.88.0.1:7480"],
    ...[
      "--netboot-address",
      "10.88.0.1",
      "--dhcp-subnet",
      "10.88.0.0/24",
      "--dhcp-range",
      "10.88.0.100-10.88.0.150",
    ],
  ]);
  ctl.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  ctl.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const deadline = Date.now() + 60_000;
  while (!log.includes('"msg":"controller started"')) {
    if (ctl.exitCode !== null || Date.now() > deadline) throw new Error(`controller did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const manifest of manifests) {
    const r = await call({ socket: socket() }, "POST", "/v1/images", { token: token(), body: { manifest } });
    expect(r.status).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  for (const vm of vms) await Netns.stop(vm);
  if (ctl) await Netns.stop(ctl);
  await ns?.destroy();
});

/** Start a VM on `tap` and wait for the initramfs marker on its serial console. */
async function bootToMarker(name: string, tap: string, args: string[]): Promise<string> {
  const consoleLog = path.join(dir, `${name}.console.log`);
  const t0 = Date.now();
  const vm = ns.spawn("qemu-system-x86_64", [
    ...["-accel", "tcg", "-m", "256", "-display", "none", "-monitor", "none", "-no-reboot"],
    ...["-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`],
    ...["-serial", `file:${consoleLog}`],
    ...args,
  ]);
  vms.push(vm);
  const deadline = Date.now() + 240_000;
  let text = "";
  while (!text.includes("WEFT-PXE-MARKER") && Date.now() < deadline && vm.exitCode === null) {
    await new Promise((r) => setTimeout(r, 500));
    text = fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, "latin1") : "";
  }
  console.log(`[pxe] ${name}: QEMU start to marker: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return text;
}

// The kernel command line is the one Weft's script rendered for this machine.
const MARKER =
  /WEFT-PXE-MARKER .*weft\.url=http:\/\/10\.88\.0\.1:7480 weft\.nonce=nonce_\S+ weft\.mode=maintenance/;

/** Every step went through Weft: the script, the kernel and initramfs downloads. */
function expectServedOverHttp(mac: string): void {
  const served = log.split("\n").filter((l) => l.includes(mac) || l.includes("/boot/images/"));
  expect(served.some((l) => l.includes('"msg":"served boot script"') && l.includes(mac))).toBe(true);
  for (const img of ["maintenance-kernel", "maintenance-initrd"]) {
    expect(served.some((l) => l.includes(`/boot/images/${img}`) && l.includes('"status":200'))).toBe(true);
  }
}

describe("the controller's TFTP service, from real clients in the namespace", () => {
  // The daemon serves Debian's iPXE binaries; fetched whole by atftp and curl at the block
  // and window sizes firmware uses, each transfer on the native UDP channel.
  const sha = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");
  const fetches: [client: "atftp" | "curl", file: string, options: string[]][] = [
    ["atftp", "undionly.kpxe", []],
    ["atftp", "snponly.efi", ["blksize 1468"]],
    ["atftp", "ipxe.pxe", ["blksize 1468", "windowsize 16"]],
    ["curl", "undionly.kpxe", []],
    ["curl", "ipxe.pxe", ["blksize 1468"]],
  ];
  it.each(fetches)(
    "%s fetches %s with options %j, and the checksum matches",
    async (client, file, options) => {
      const local = path.join(dir, `tftp-${client}-${options.length}-${file}`);
      const completions = () =>
        log
          .split("\n")
          .filter((l) => l.includes('"msg":"tftp transfer complete"') && l.includes(`"file":"${file}"`));
      const before = completions().length;
      const blksize = options.find((o) => o.startsWith("blksize"))?.split(" ")[1];
      const r =
        client === "atftp"
          ? await ns.exec("atftp", [
              ...["--get", "-r", file, "-l", local],
              ...options.flatMap((o) => ["--option", o]),
              "10.88.0.1",
            ])
          : await ns.exec("curl", [
              ...["-sS", "--max-time", "60", `tftp://10.88.0.1/${file}`, "-o", local],
              ...(blksize ? ["--tftp-blksize", blksize] : []),
            ]);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(fs.readFileSync(local))).toBe(sha(fs.readFileSync(path.join("/usr/lib/ipxe", file))));
      // The client may exit before the controller has logged the last ACK.
      for (let i = 0; i < 50 && completions().length === before; i++)
        await new Promise((r) => setTimeout(r, 100));
      const done = JSON.parse(completions().at(-1) ?? "null") as { dataPath: string } | null;
      expect(done).toMatchObject({
        dataPath: "native",
        blksize: Number(blksize ?? 512),
        windowsize: options.includes("windowsize 16") ? 16 : 1,
      });
    },
  );

  it("refuses Debian's ipxe.efi, a symlink out of its root (to /boot), as an access violation", async () => {
    const r = await ns.exec("curl", [
      "-sS",
      "--max-time",
      "30",
      "tftp://10.88.0.1/ipxe.efi",
      "-o",
      "/dev/null",
    ]);
    expect(r.code).toBe(69); // curl: "TFTP: Access violation"
    expect(log).toMatch(/"file":"ipxe.efi".*"msg":"tftp request refused"/);
  });
});

describe("PXE boot from Weft", () => {
  it("a VM gets an address, its iPXE script and the kernel from Weft, and runs the initramfs", async () => {
    const text = await bootToMarker("bios-ipxe", TAPS[0] as string, [
      ...["-boot", "n", "-device", `virtio-net-pci,netdev=n0,mac=${MAC}`],
    ]);
    expect(text).toContain("WEFT-PXE-MARKER");
    expect(text).toMatch(MARKER);
    expectServedOverHttp(MAC);
    // DHCP recorded the machine and its lease.
    const m = await call({ socket: socket() }, "GET", `/v1/machines/${MAC}`, { token: token() });
    expect(m.json).toMatchObject({ state: "discovered", nics: [{ mac: MAC, pxe: true }] });
  }, 300_000);

  it("OVMF's own UEFI PXE loads iPXE over Weft's TFTP, which goes on to boot the kernel", async () => {
    // OVMF's variables are written at boot: each VM gets a copy.
    const vars = path.join(dir, "OVMF_VARS.fd");
    fs.copyFileSync("/usr/share/OVMF/OVMF_VARS_4M.fd", vars);
    const text = await bootToMarker("uefi-pxe", TAPS[1] as string, [
      ...["-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"],
      ...["-drive", `if=pflash,format=raw,file=${vars}`],
      // romfile= leaves the NIC without QEMU's iPXE ROM: OVMF's own driver and PXE client boot.
      ...["-device", `virtio-net-pci,netdev=n0,mac=${UEFI_MAC},romfile=,bootindex=1`],
    ]);
    expect(text).toMatch(MARKER);
    // The firmware fetched snponly.efi whole, on the native UDP channel.
    const size = fs.statSync("/usr/lib/ipxe/snponly.efi").size;
    const tftp = log
      .split("\n")
      .filter((l) => l.includes('"msg":"tftp transfer complete"') && l.includes('"file":"snponly.efi"'))
      // The VM's own fetch, not the ones atftp made from the bridge address above.
      .filter((l) => !l.includes('"remote":"10.88.0.1:'))
      .map((l) => JSON.parse(l) as { bytes: number; dataPath: string; blksize: number; windowsize: number });
    expect(tftp.length).toBeGreaterThan(0);
    expect(tftp[0]).toMatchObject({ bytes: size, dataPath: "native" });
    console.log(`[pxe] uefi-pxe: TFTP ${JSON.stringify(tftp[0])}`);
    expectServedOverHttp(UEFI_MAC);
  }, 300_000);
});
