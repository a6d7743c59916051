// The guest base image: a small qcow2 that boots from its own disk under libvirt. GPT with two
// partitions, made without mounting anything:
//   1. FAT16 `WEFTBOOT`, legacy-BIOS-bootable: syslinux, the kernel and a tiny initramfs that
//      loads the drivers and switches to partition 2;
//   2. ext4 `weft-guest`: busybox, iperf3 and the start-up script that reads the config drive.
// gptmbr.bin in the first 440 bytes chains to partition 1's syslinux boot sector.
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { packInitramfs } from "../parts/initramfs.js";
import { canonicalJson, uuidFromDigest } from "../core/hash.js";
import { normalizeTimes, SOURCE_DATE_EPOCH, Tree } from "../parts/tree.js";
import { installedVersions, owningPackages } from "../system/dpkg.js";
import { sharedLibraries } from "../system/elf.js";
import { findKernel, modulesToLoad } from "../system/kernel.js";
import { hashRecipeFiles, type Recipe } from "./recipe.js";

export const GUEST_SPEC = {
  /** Bumped when the builder code (not just this data) changes what the recipe produces. */
  revision: 2,
  kernelPackage: "linux-image-amd64",
  busybox: "/bin/busybox",
  programs: ["/usr/bin/iperf3"],
  modules: [
    "crc32c_generic",
    "crct10dif_generic",
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "e1000",
    "ata_piix",
    "ahci",
    "sd_mod",
    "sr_mod",
    "ext4",
    "isofs",
  ],
  gptmbr: "/usr/lib/syslinux/mbr/gptmbr.bin",
  syslinux: "/usr/bin/syslinux",
  bootMiB: 40,
  /** Free space left on the root filesystem beyond its contents. */
  rootSlackMiB: 32,
  rootLabel: "weft-guest",
  bootLabel: "WEFTBOOT",
  compression: { kind: "zstd", level: 19 },
  files: ["guest/initramfs-init", "guest/inittab", "guest/rcS", "guest/syslinux.cfg", "common/udhcpc.script"],
} as const;

const SECTOR = 512;
const MiB = 1024 * 1024;

export const guestRecipe: Recipe = {
  name: "guest-base",
  artifacts: ["guest-base"],
  async plan(ctx) {
    const spec = GUEST_SPEC;
    const { run } = ctx;
    const kernel = await findKernel(run, spec.kernelPackage);
    const libs = await sharedLibraries(run, spec.programs);
    const hostFiles = [spec.busybox, ...spec.programs, ...libs, spec.gptmbr, spec.syslinux];
    const pkgNames = [...new Set([...(await owningPackages(run, hostFiles)), kernel.package])];
    const packages = await installedVersions(run, pkgNames);
    const files = await hashRecipeFiles(ctx.recipesDir, spec.files);
    const key = { recipe: "guest-base", spec, files, packages, extra: { "kernel-release": kernel.release } };
    // Identities (disk and partition GUIDs, filesystem UUID, hash seed) follow from the inputs,
    // and every timestamp is SOURCE_DATE_EPOCH, so equal inputs give an identical image.
    const seed = canonicalJson(key);
    const uuid = (what: string): string => uuidFromDigest(`${seed}:${what}`);
    const fixedTime = {
      SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH),
      E2FSPROGS_FAKE_TIME: String(SOURCE_DATE_EPOCH),
    };
    return {
      key,
      async build() {
        const w = (n: string): string => join(ctx.workDir, n);
        const initrd = w("initrd.img");
        await ctx.step("build the initramfs", async () => {
          const t = new Tree(w("initramfs"));
          await t.dirs("/proc", "/sys", "/dev", "/newroot");
          await t.recipeFile(ctx.recipesDir, "guest/initramfs-init", "/init", 0o755);
          const mods = await modulesToLoad(kernel, spec.modules);
          for (const m of mods)
            await t.copy(join(kernel.modulesDir, m), join("/lib/modules", kernel.release, m));
          await t.text("/etc/modules.order", `${mods.join("\n")}\n`);
          await t.busybox(run, spec.busybox);
          await packInitramfs(run, t.root, initrd, spec.compression);
        });
        const rootTree = new Tree(w("root"));
        await ctx.step("stage the root filesystem", async () => {
          const t = rootTree;
          await t.dirs("/proc", "/sys", "/dev", "/run", "/tmp", "/mnt", "/root", "/var/www", "/etc/init.d");
          await t.recipeFile(ctx.recipesDir, "guest/inittab", "/etc/inittab");
          await t.recipeFile(ctx.recipesDir, "guest/rcS", "/etc/init.d/rcS", 0o755);
          await t.recipeFile(
            ctx.recipesDir,
            "common/udhcpc.script",
            "/usr/share/udhcpc/default.script",
            0o755,
          );
          await t.programs(run, spec.programs);
          await t.text("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
          await t.text("/etc/shadow", "root:*:20454:0:99999:7:::\n", 0o600);
          await t.text("/etc/group", "root:x:0:\n");
          await t.text("/etc/hostname", "weft-guest\n");
          await t.text("/etc/fstab", `LABEL=${spec.rootLabel} / ext4 rw 0 1\n`);
          await t.busybox(run, spec.busybox);
          await normalizeTimes(run, t.root);
        });
        const { stdout } = await run.run("du", ["-s", "--block-size=1M", rootTree.root]);
        const rootMiB = Number.parseInt(stdout, 10) + spec.rootSlackMiB;
        const p1Start = 2048;
        const p2Start = p1Start + (spec.bootMiB * MiB) / SECTOR;
        const p2Sectors = (rootMiB * MiB) / SECTOR;
        const totalSectors = p2Start + p2Sectors + 2048;
        const disk = w("disk.raw");
        await ctx.step("partition the disk (GPT)", async () => {
          await run.run("truncate", ["-s", String(totalSectors * SECTOR), disk]);
          await run.run("sgdisk", [
            "--clear",
            `--new=1:${p1Start}:+${spec.bootMiB}M`,
            "--typecode=1:0700",
            "--change-name=1:weft-boot",
            "--attributes=1:set:2",
            `--new=2:${p2Start}:+${rootMiB}M`,
            "--typecode=2:8300",
            `--change-name=2:${spec.rootLabel}`,
            `--disk-guid=${uuid("disk")}`,
            `--partition-guid=1:${uuid("boot")}`,
            `--partition-guid=2:${uuid("root")}`,
            disk,
          ]);
        });
        await ctx.step("make the boot partition (FAT, syslinux)", async () => {
          const env = { MTOOLS_SKIP_CHECK: "1", ...fixedTime };
          await run.run(
            "mkfs.fat",
            [
              "-F",
              "16",
              "-n",
              spec.bootLabel,
              "-i",
              "57454654",
              "-h",
              String(p1Start),
              `--offset=${p1Start}`,
              disk,
              String(spec.bootMiB * 1024),
            ],
            { env },
          );
          await copyFile(kernel.vmlinuz, w("vmlinuz"));
          await copyFile(join(ctx.recipesDir, "guest/syslinux.cfg"), w("syslinux.cfg"));
          const img = `${disk}@@${p1Start * SECTOR}`;
          const bootFiles = [w("vmlinuz"), w("initrd.img"), w("syslinux.cfg")];
          await run.run("touch", ["-d", `@${SOURCE_DATE_EPOCH}`, ...bootFiles]);
          await run.run("mcopy", ["-i", img, "-o", "-m", ...bootFiles, "::/"], { env });
          await run.run(spec.syslinux, ["--install", `--offset=${p1Start * SECTOR}`, disk], { env });
        });
        await ctx.step("make the root partition (mkfs.ext4 -d)", async () => {
          const img = w("root.ext4");
          await run.run(
            "mkfs.ext4",
            [
              "-q",
              "-F",
              "-L",
              spec.rootLabel,
              "-U",
              uuid("rootfs"),
              "-E",
              `root_owner=0:0,hash_seed=${uuid("hash")}`,
              "-d",
              rootTree.root,
              img,
              `${rootMiB}M`,
            ],
            {
              env: fixedTime,
            },
          );
          await run.run("dd", [
            `if=${img}`,
            `of=${disk}`,
            "bs=1M",
            `seek=${(p2Start * SECTOR) / MiB}`,
            "conv=notrunc,sparse",
            "status=none",
          ]);
        });
        await ctx.step("install the GPT boot code", () =>
          run.run("dd", [
            `if=${spec.gptmbr}`,
            `of=${disk}`,
            "bs=440",
            "count=1",
            "conv=notrunc",
            "status=none",
          ]),
        );
        const qcow2 = w("guest-base.qcow2");
        await ctx.step("convert to compressed qcow2", () =>
          run.run("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", "-c", disk, qcow2]),
        );
        return {
          artifacts: [
            {
              name: "guest-base",
              kind: "guest-disk",
              format: "qcow2",
              extension: "qcow2",
              path: qcow2,
              details: {
                virtualSize: totalSectors * SECTOR,
                kernelRelease: kernel.release,
                boot: "disk: GPT, syslinux on partition 1 (FAT), root ext4 LABEL=weft-guest on partition 2",
                console: "ttyS0",
                configDrive:
                  "ISO9660 labelled cidata or config-2 holding weft.json {hostname, dip, gateway, role}",
                roles: "web (busybox httpd on port 80 serving the guest name); iperf3 server always",
              },
            },
          ],
        };
      },
    };
  },
};
