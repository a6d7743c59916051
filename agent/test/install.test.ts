import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { InstallHostParams } from "@weft/wire";
import { afterEach, describe, expect, it } from "vitest";
import { appendKernelArgs, extlinuxConfig, installHost } from "../src/install.js";
import { serveImage, type ImageServer } from "./helpers/image-server.js";
import { installEnv, PART_GUID, type InstallEnv } from "./helpers/install-env.js";
import { cleanup } from "./helpers/tmp.js";

let env: InstallEnv | undefined;
let server: ImageServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  if (env) {
    // No test may have run a command it did not stub, even one whose error was caught.
    expect(env.stub.unstubbed).toEqual([]);
    await cleanup(env.dir);
  }
  env = undefined;
});

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("install-host with a stubbed exec", { timeout: 30_000 }, () => {
  it("runs the exact partition, check, mount and bootloader commands, in order", async () => {
    env = await installEnv({ imageHas: "kernel" });
    server = await serveImage(env.gz);
    const out = await installHost(env.params(server.url), env.ctx);
    expect(out).toEqual({ message: "installed host-bookworm on vda (vda1)", then: "reboot" });
    const dev = env.settings.devDir;
    const mnt = env.mountPoint();
    expect(env.stub.calls).toEqual([
      `sgdisk -Z ${dev}/vda`,
      `sgdisk -n 1:2048:0 -t 1:8300 -A 1:set:2 -c 1:weft-root ${dev}/vda`,
      `sgdisk -i 1 ${dev}/vda`,
      `resize2fs ${dev}/vda1`,
      `mount -t ext4 ${dev}/vda1 ${mnt}`,
      `extlinux --install ${mnt}/boot/extlinux`,
      `umount ${mnt}`,
      "sync",
    ]);
    // The image reached the partition.
    const part = await readFile(join(dev, "vda1"));
    expect(part.subarray(0, env.raw.length).equals(env.raw)).toBe(true);
    // gptmbr.bin in the first 440 bytes of the disk.
    const disk = await readFile(join(dev, "vda"));
    expect(disk.subarray(0, 440).equals(env.mbr)).toBe(true);
    expect(disk[440]).toBe(0);
  });

  it("writes the host identity (0600), the hostname and an extlinux.conf that boots by PARTUUID", async () => {
    env = await installEnv({ imageHas: "kernel" });
    server = await serveImage(env.gz);
    await installHost(env.params(server.url), env.ctx);
    const mnt = env.mountPoint();
    const agentJson = join(mnt, "etc/weft/agent.json");
    expect(JSON.parse(await readFile(agentJson, "utf8"))).toEqual({
      machineId: "m-42",
      hostname: "rack1-u07",
      controllerUrl: "http://10.0.0.1:8080",
      token: "tok-secret-42",
    });
    expect((await stat(agentJson)).mode & 0o777).toBe(0o600);
    expect(await readFile(join(mnt, "etc/hostname"), "utf8")).toBe("rack1-u07\n");
    const conf = await readFile(join(mnt, "boot/extlinux/extlinux.conf"), "utf8");
    expect(conf).toBe(
      extlinuxConfig("/boot/vmlinuz-6.1.0-28-amd64", "/boot/initrd.img-6.1.0-28-amd64", PART_GUID),
    );
    expect(conf).toContain(`APPEND root=PARTUUID=${PART_GUID} rw console=ttyS0,115200`);
  });

  it("keeps the image's own extlinux.conf", async () => {
    env = await installEnv({ imageHas: "extlinux.conf" });
    server = await serveImage(env.gz);
    await installHost(env.params(server.url), env.ctx);
    expect(await readFile(join(env.mountPoint(), "boot/extlinux/extlinux.conf"), "utf8")).toBe(
      "DEFAULT image\n",
    );
  });

  it("adds the controller's kernel arguments to the command line it boots", async () => {
    env = await installEnv({ imageHas: "kernel" });
    server = await serveImage(env.gz);
    await installHost(
      { ...env.params(server.url), kernelArgs: ["tsc=reliable", "mitigations=off"] },
      env.ctx,
    );
    const conf = await readFile(join(env.mountPoint(), "boot/extlinux/extlinux.conf"), "utf8");
    expect(conf).toContain(
      `APPEND root=PARTUUID=${PART_GUID} rw console=ttyS0,115200 console=tty0 tsc=reliable mitigations=off\n`,
    );
  });

  it("refuses kernel arguments an image's own extlinux.conf has no command line for", async () => {
    env = await installEnv({ imageHas: "extlinux.conf" });
    server = await serveImage(env.gz);
    await expect(
      installHost({ ...env.params(server.url), kernelArgs: ["tsc=reliable"] }, env.ctx),
    ).rejects.toMatchObject({ code: "KERNEL_ARGS_UNSUPPORTED" });
    expect(await readFile(join(env.mountPoint(), "boot/extlinux/extlinux.conf"), "utf8")).toBe(
      "DEFAULT image\n",
    );
  });

  it("reports stages in order with progress that never goes down", async () => {
    env = await installEnv({ imageHas: "kernel" });
    server = await serveImage(env.gz);
    await installHost(env.params(server.url), env.ctx);
    const stages = [...new Set(env.updates.map((u) => u.stage))];
    expect(stages).toEqual(["select-disk", "partition", "write-image", "resize", "configure", "bootloader"]);
    const ps = env.updates.flatMap((u) => (u.progress === undefined ? [] : [u.progress]));
    expect(ps).toEqual([...ps].sort((a, b) => a - b));
    expect(ps.at(-1)).toBe(1);
  });

  it("asks the kernel to re-read the table when the partition does not show by itself", async () => {
    env = await installEnv({ imageHas: "kernel", partitionAppears: "rescan" });
    server = await serveImage(env.gz);
    await installHost(env.params(server.url), env.ctx);
    expect(env.stub.calls.slice(2, 4)).toEqual([
      `blockdev --rereadpt ${env.settings.devDir}/vda`,
      `sgdisk -i 1 ${env.settings.devDir}/vda`,
    ]);
  });

  it("fails with PARTITION_NOT_FOUND when no rescan brings the partition", async () => {
    env = await installEnv({ partitionAppears: "never" });
    server = await serveImage(env.gz);
    await expect(installHost(env.params(server.url), env.ctx)).rejects.toMatchObject({
      code: "PARTITION_NOT_FOUND",
    });
    expect(env.stub.calls).toContain(`partx -a ${env.settings.devDir}/vda`);
    expect(server.requests).toEqual([]);
  });

  it("on a checksum mismatch: FAILED before any fsck/mount/bootloader step, and the partial image is cleared", async () => {
    env = await installEnv({ imageHas: "kernel" });
    server = await serveImage(env.gz);
    await expect(
      installHost(env.params(server.url, { sha256: "f".repeat(64) }), env.ctx),
    ).rejects.toMatchObject({
      code: "IMAGE_CHECKSUM_MISMATCH",
    });
    expect(env.stub.calls.some((c) => /^(e2fsck|resize2fs|mount|extlinux)/.test(c))).toBe(false);
    const part = await readFile(join(env.settings.devDir, "vda1"));
    expect(part.subarray(0, 1 << 20).every((b) => b === 0)).toBe(true);
    const disk = await readFile(join(env.settings.devDir, "vda"));
    expect(disk.subarray(0, 440).every((b) => b === 0)).toBe(true);
  });

  it("refuses UEFI machines and unknown formats before touching the disk", async () => {
    env = await installEnv();
    await expect(
      installHost(env.params("http://127.0.0.1:9/x"), { ...env.ctx, firmware: "uefi" }),
    ).rejects.toMatchObject({
      type: "unsupported",
      code: "UEFI_NOT_SUPPORTED",
    });
    const qcow = env.params("http://127.0.0.1:9/x");
    (qcow.image as { format: string }).format = "qcow2";
    await expect(installHost(qcow, env.ctx)).rejects.toMatchObject({ code: "IMAGE_FORMAT_UNSUPPORTED" });
    expect(env.stub.calls).toEqual([]);
  });

  it("refuses an image without extlinux.conf or kernel", async () => {
    env = await installEnv({ imageHas: "nothing" });
    server = await serveImage(env.gz);
    await expect(installHost(env.params(server.url), env.ctx)).rejects.toMatchObject({
      code: "IMAGE_NOT_BOOTABLE",
    });
    expect(env.stub.calls.at(-1)).toMatch(/^umount /); // unmounted even on failure
  });
});

describe("kernel arguments in an extlinux.conf", () => {
  const conf = [
    "DEFAULT weft",
    "LABEL weft",
    "  LINUX /boot/vmlinuz",
    "  APPEND root=LABEL=weft-root ro console=ttyS0,115200n8",
    "LABEL rescue",
    "\tappend root=LABEL=weft-root single  ",
    "",
  ].join("\n");

  it("adds them to every entry's APPEND line, whatever its case and indent", () => {
    const r = appendKernelArgs(conf, ["tsc=reliable"]);
    expect(r.lines).toBe(2);
    expect(r.text.split("\n")).toEqual([
      "DEFAULT weft",
      "LABEL weft",
      "  LINUX /boot/vmlinuz",
      "  APPEND root=LABEL=weft-root ro console=ttyS0,115200n8 tsc=reliable",
      "LABEL rescue",
      "\tappend root=LABEL=weft-root single tsc=reliable",
      "",
    ]);
  });

  it("takes no argument that could add a line or a word of its own to the boot loader's file", () => {
    const params = (kernelArgs: string[]) => ({
      image: { name: "h", url: "http://c/h", sha256: "a".repeat(64), size: 1, format: "ext4.gz" },
      disk: null,
      host: { machineId: "m", hostname: "h", controllerUrl: "http://c", token: "t" },
      kernelArgs,
    });
    expect(InstallHostParams.safeParse(params(["tsc=reliable", "console=ttyS0,115200n8"])).success).toBe(
      true,
    );
    for (const bad of ["a b", "quiet\nMENU HIDDEN", "", "x".repeat(257), "$(reboot)"]) {
      expect(InstallHostParams.safeParse(params([bad])).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it("does not add an argument twice, and leaves a configuration without APPEND alone", () => {
    const once = appendKernelArgs(conf, ["tsc=reliable"]).text;
    expect(appendKernelArgs(once, ["tsc=reliable"]).text).toBe(once);
    expect(appendKernelArgs("DEFAULT image\n", ["tsc=reliable"])).toEqual({
      text: "DEFAULT image\n",
      lines: 0,
    });
  });
});
