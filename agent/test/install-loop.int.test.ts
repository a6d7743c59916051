// install-host for real, on a loop device: real sgdisk, e2fsck, resize2fs, mount, extlinux and
// a real HTTP image server. Only the reboot is stubbed (the guarded runner refuses it and any
// disk tool aimed at something other than this test's loop device).
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, stat, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandRunner } from "../src/commands.js";
import { ControllerClient } from "../src/client.js";
import { systemClock } from "../src/clock.js";
import { DEFAULT_DISK_SETTINGS, type DiskSettings } from "../src/context.js";
import { createExec, execaRunner } from "../src/exec.js";
import { consoleLogger, type Logger } from "../src/log.js";
import { fakeController, type FakeController } from "./helpers/fake-controller.js";
import { guardedRunner } from "./helpers/guarded-runner.js";
import { serveImage, type ImageServer } from "./helpers/image-server.js";
import { cleanup, tempDir } from "./helpers/tmp.js";

const GPTMBR = "/usr/lib/syslinux/mbr/gptmbr.bin";
const TOOLS = [
  "/usr/sbin/losetup",
  "/usr/sbin/sgdisk",
  "/usr/sbin/mkfs.ext4",
  "/usr/bin/extlinux",
  "/usr/sbin/e2fsck",
  "/usr/sbin/resize2fs",
  GPTMBR,
];
const missing = TOOLS.filter((t) => !existsSync(t));
const canRun = process.getuid?.() === 0 && existsSync("/dev/loop-control") && missing.length === 0;

const run = async (cmd: string, args: string[]): Promise<string> => {
  const r = await execaRunner(cmd, args, {});
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.exitCode} ${r.stderr}`);
  return r.stdout;
};

describe.skipIf(!canRun)("install-host on a loop device (real tools)", () => {
  let dir = "";
  let loop: string | undefined;
  let server: ImageServer | undefined;
  let ctl: FakeController | undefined;
  const checkMnt = (): string => join(dir, "check");
  let mountedCheck = false;
  const lines: string[] = [];
  const log: Logger = consoleLogger((l) => {
    lines.push(l);
    if (process.env.WEFT_TEST_VERBOSE) console.log(l);
  });
  let image = { raw: 0, gz: Buffer.alloc(0), sha256: "" };

  beforeAll(async () => {
    dir = await tempDir("weft-agent-loop-");
    // 1 GiB sparse backing file.
    const backing = join(dir, "disk.img");
    const fh = await open(backing, "w");
    await fh.truncate(1 << 30);
    await fh.close();
    loop = (await run("losetup", ["-f", "--show", "-P", backing])).trim();
    expect(loop).toMatch(/^\/dev\/loop\d+$/);

    // A small host image: extlinux.conf, a kernel stand-in and 24 MiB of random data, in a
    // 192 MiB ext4 made with mkfs.ext4 -d (nothing mounted).
    const rootfs = join(dir, "rootfs");
    await mkdir(join(rootfs, "boot/extlinux"), { recursive: true });
    await mkdir(join(rootfs, "etc"), { recursive: true });
    await writeFile(
      join(rootfs, "boot/extlinux/extlinux.conf"),
      "SERIAL 0 115200\nPROMPT 0\nDEFAULT host\nLABEL host\n  LINUX /boot/vmlinuz-missing\n  APPEND root=LABEL=weft-root console=ttyS0\n",
    );
    await writeFile(join(rootfs, "boot/vmlinuz"), randomBytes(4096));
    await writeFile(join(rootfs, "payload.bin"), randomBytes(24 << 20));
    const ext4 = join(dir, "host.ext4");
    await run("mkfs.ext4", ["-q", "-F", "-L", "weft-root", "-d", rootfs, ext4, "192M"]);
    const raw = await readFile(ext4);
    const gz = gzipSync(raw, { level: 1 });
    image = { raw: raw.length, gz, sha256: createHash("sha256").update(gz).digest("hex") };
    // Cut the connection twice: the real install must resume too.
    server = await serveImage(gz, { cutAfter: [Math.floor(gz.length / 3), Math.floor(gz.length / 3)] });
    ctl = await fakeController({ nonce: "loop-test-nonce-0123456789" });
  }, 120_000);

  afterAll(async () => {
    // Runs even when a test failed: unmount, detach, remove.
    const quiet = (cmd: string, args: string[]): Promise<unknown> =>
      execaRunner(cmd, args, {}).catch(() => undefined);
    if (mountedCheck) await quiet("umount", [checkMnt()]);
    if (dir) {
      const mounts = await readFile("/proc/mounts", "utf8");
      for (const l of mounts.split("\n")) {
        const mp = l.split(" ")[1];
        if (mp?.startsWith(dir)) await quiet("umount", [mp]);
      }
    }
    if (loop) await quiet("losetup", ["-d", loop]);
    await server?.close();
    await ctl?.close();
    if (dir) await cleanup(dir);
  });

  it("partitions, streams with resume, verifies, installs extlinux and gptmbr, writes the identity; reboot stubbed", async () => {
    const dev = loop ?? "";
    const name = dev.slice("/dev/".length);
    const calls: string[] = [];
    const exec = createExec(
      log,
      guardedRunner(() => loop, calls),
    );
    const settings: DiskSettings = {
      ...DEFAULT_DISK_SETTINGS,
      mountBase: join(dir, "mnt"),
      gptmbrPath: GPTMBR,
    };
    const c = ctl as FakeController;
    const client = new ControllerClient({ baseUrl: c.url, token: "tok-abc" });
    let reboots = 0;
    const runner = new CommandRunner({
      client,
      log,
      context: { exec, log, clock: systemClock, fetch: globalThis.fetch, disks: settings, firmware: "bios" },
      reboot: () => {
        reboots++;
        return Promise.resolve();
      },
      onFatal: (e) => {
        throw e;
      },
    });
    const started = Date.now();
    runner.accept({
      ok: true,
      command: {
        id: "cmd-loop",
        kind: "install-host",
        params: {
          image: {
            name: "host-test",
            url: server?.url ?? "",
            sha256: image.sha256,
            size: image.gz.length,
            format: "ext4.gz",
          },
          disk: name,
          host: {
            machineId: "m-loop",
            hostname: "loop-host",
            controllerUrl: "http://10.0.0.1:8080",
            token: "tok-loop-secret",
          },
        },
      },
    });
    await runner.idle();
    const seconds = (Date.now() - started) / 1000;
    const final = c.reports.at(-1)?.report;
    expect(final, JSON.stringify(final)).toMatchObject({ state: "SUCCEEDED", progress: 1 });
    expect(reboots).toBe(1);
    expect(server?.requests.map((r) => r.status)).toEqual([200, 206, 206]);
    const written = lines.find((l) => l.includes("image written and verified")) ?? "";
    console.log(
      `loop install: ${seconds.toFixed(1)} s total; ${written}; partition via: ${calls.filter((l) => /^(blockdev|partx)/.test(l)).join(", ") || "sgdisk alone"}`,
    );

    // GPT: partition 1 from sector 2048, Linux type, legacy BIOS bootable (attribute bit 2), named.
    const info = await run("sgdisk", ["-i", "1", dev]);
    expect(info).toMatch(/Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4/);
    expect(info).toMatch(/First sector: 2048 /);
    expect(info).toMatch(/Attribute flags: 0000000000000004/);
    expect(info).toMatch(/Partition name: 'weft-root'/);

    // gptmbr.bin in the first 440 bytes.
    const mbr = await readFile(GPTMBR);
    const fh = await open(dev, "r");
    const head = Buffer.alloc(512);
    await fh.read(head, 0, 512, 0);
    await fh.close();
    expect(head.subarray(0, mbr.length).equals(mbr)).toBe(true);
    expect(head.readUInt16LE(510)).toBe(0xaa55); // protective MBR signature kept

    // The file system: clean, grown to the partition, identity written, extlinux installed.
    const part = `${dev}p1`;
    await run("e2fsck", ["-fn", part]);
    await mkdir(checkMnt());
    await run("mount", ["-t", "ext4", "-o", "ro", part, checkMnt()]);
    mountedCheck = true;
    const agentJson = join(checkMnt(), "etc/weft/agent.json");
    expect(JSON.parse(await readFile(agentJson, "utf8"))).toMatchObject({
      machineId: "m-loop",
      token: "tok-loop-secret",
    });
    expect((await stat(agentJson)).mode & 0o777).toBe(0o600);
    expect(await readFile(join(checkMnt(), "etc/hostname"), "utf8")).toBe("loop-host\n");
    expect(existsSync(join(checkMnt(), "boot/extlinux/ldlinux.sys"))).toBe(true);
    expect(await readFile(join(checkMnt(), "boot/extlinux/extlinux.conf"), "utf8")).toContain(
      "root=LABEL=weft-root",
    );
    const fs = await statfs(checkMnt());
    expect(fs.blocks * fs.bsize).toBeGreaterThan(900 << 20); // resized from 192 MiB to ~1 GiB
    expect(calls.some((l) => l.startsWith("reboot"))).toBe(false);
  });

  it.skipIf(!existsSync("/usr/bin/qemu-system-x86_64"))(
    "the installed disk boots under QEMU (TCG) through gptmbr into extlinux",
    async () => {
      if (mountedCheck) {
        await run("umount", [checkMnt()]);
        mountedCheck = false;
      }
      // Boot a snapshot of the loop device: the BIOS runs gptmbr, which chains to the
      // legacy-bootable partition's extlinux, which reads extlinux.conf and, with SERIAL set,
      // reports on the serial port that the (deliberately absent) kernel is missing.
      const qemu = execa(
        "qemu-system-x86_64",
        [
          "-accel",
          "tcg",
          "-m",
          "128",
          "-nographic",
          "-no-reboot",
          "-serial",
          "stdio",
          "-monitor",
          "none",
          "-drive",
          `file=${loop ?? ""},format=raw,snapshot=on,if=ide`,
        ],
        { reject: false, stdin: "ignore", timeout: 90_000 },
      );
      let out = "";
      const seen = new Promise<string>((resolve) => {
        qemu.stdout?.on("data", (d: Buffer) => {
          out += d.toString("latin1");
          if (/vmlinuz-missing/.test(out)) resolve(out);
        });
        void qemu.then(() => resolve(out));
      });
      const started = Date.now();
      const text = await seen;
      qemu.kill("SIGKILL");
      await qemu;
      const line = text.split(/\r?\n/).find((l) => l.includes("vmlinuz-missing"));
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`QEMU/TCG: extlinux answered on serial after ${secs} s: ${line?.trim() ?? ""}`);
      expect(text).toMatch(/vmlinuz-missing/);
      expect(text).not.toMatch(/Missing OS|No bootable device/);
    },
    120_000,
  );
});
