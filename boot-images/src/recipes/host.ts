// The host OS: Debian bookworm bootstrapped with debootstrap (minbase plus kernel, systemd,
// libvirt, QEMU, nftables), Node and the agent bundle with a systemd unit in host mode, DHCP on
// every wired NIC, an extlinux.conf and a serial getty; made into an ext4 filesystem image with
// `mkfs.ext4 -d` (nothing is mounted) and published gzip-compressed, so the installer can stream
// it through any gunzip (Node's zlib included) onto the root partition.
import { access, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { uuidFromDigest } from "../core/hash.js";
import { computeInputKey } from "../core/key.js";
import { Tree } from "../parts/tree.js";
import { installedVersions } from "../system/dpkg.js";
import { findMirror } from "../system/mirror.js";
import { unmountUnder } from "../system/mounts.js";
import { suiteReleaseDigest } from "../system/release.js";
import { hashRecipeFiles, type Recipe } from "./recipe.js";

export const HOST_SPEC = {
  /** Bumped when the builder code (not just this data) changes what the recipe produces. */
  revision: 2,
  suite: "bookworm",
  variant: "minbase",
  include: [
    "linux-image-amd64",
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "udev",
    "kmod",
    "libvirt-daemon-system",
    "qemu-system-x86",
    "qemu-utils",
    "nftables",
    "iproute2",
    "libstdc++6",
  ],
  node: "/usr/bin/node",
  hostname: "weft-host",
  rootLabel: "weft-root",
  /**
   * Free space in the image beyond its contents. Kept small: every byte of the image is
   * decompressed and written at install time, and the installer grows the file system to the
   * partition anyway.
   */
  slackMiB: 64,
  /**
   * Module trees under /usr/lib/modules/<release>/kernel a VM host has no use for (graphics,
   * sound, radios, cameras, field buses, boards' embedded controllers): about half of the
   * kernel's modules, so a smaller image to stream and fewer modules for udev to load at boot.
   */
  dropModules: [
    "drivers/gpu",
    "drivers/media",
    "drivers/staging",
    "drivers/infiniband",
    "drivers/net/wireless",
    "drivers/net/can",
    "drivers/net/ieee802154",
    "drivers/bluetooth",
    "drivers/iio",
    "drivers/isdn",
    "drivers/input/touchscreen",
    "drivers/input/joystick",
    "drivers/input/tablet",
    "drivers/nfc",
    "drivers/mtd",
    "drivers/w1",
    "drivers/atm",
    "drivers/platform/chrome",
    "drivers/pcmcia",
    "drivers/ssb",
    "drivers/bcma",
    "drivers/usb/gadget",
    "drivers/video/fbdev",
    "sound",
    "net/wireless",
    "net/mac80211",
    "net/bluetooth",
    "net/nfc",
    "net/can",
    "net/ieee802154",
    "net/mac802154",
    "net/atm",
  ],
  /**
   * The host's initramfs carries only what finds the root file system (MODULES=list) instead of
   * Debian's "most": virtio, SATA/AHCI, NVMe and the common SAS/RAID controllers. A 35 MB
   * initramfs took 12 s to unpack under TCG.
   */
  initramfsModules: [
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "sd_mod",
    "ahci",
    "ata_piix",
    "ata_generic",
    "nvme",
    "megaraid_sas",
    "mpt3sas",
    "hpsa",
    "smartpqi",
    "aacraid",
    "ext4",
    "crc32c_generic",
  ],
  /** Removed after bootstrapping: documentation, translations, package indexes and caches. */
  prune: [
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/cache/debconf/templates.dat-old",
    "var/cache/debconf/config.dat-old",
    "var/log/bootstrap.log",
  ],
  enable: ["systemd-networkd.service", "weft-agent.service", "serial-getty@ttyS0.service"],
  gzipLevel: 6,
  files: [
    "host/weft-agent.service",
    "host/20-weft-dhcp.network",
    "host/wait-online.conf",
    "host/extlinux.conf",
    "host/fstab",
  ],
} as const;

export const hostRecipe: Recipe = {
  name: "host-bookworm",
  artifacts: ["host-bookworm"],
  async plan(ctx) {
    const spec = HOST_SPEC;
    const { run } = ctx;
    const mirror = await findMirror(spec.suite);
    const release = await suiteReleaseDigest(mirror);
    const agent = await ctx.agent();
    const packages = await installedVersions(run, ["nodejs", "debootstrap"]);
    const files = await hashRecipeFiles(ctx.recipesDir, spec.files);
    // The bootstrapped base (the slow part) has its own key and cache, so a change to the agent
    // or to a unit file only redoes the quick layers on top of it.
    const baseKey = computeInputKey({
      recipe: "host-bookworm-base",
      spec: { suite: spec.suite, variant: spec.variant, include: spec.include, prune: spec.prune },
      files: {},
      packages: { debootstrap: packages["debootstrap"] ?? "" },
      extra: { mirror: mirror.uri, [`${spec.suite}-InRelease`]: release.sha256 },
    });
    const basesDir = join(ctx.cacheDir, "host-base");
    const baseDir = join(basesDir, baseKey.slice(0, 16));
    const key = {
      recipe: "host-bookworm",
      spec,
      files,
      packages,
      extra: {
        mirror: mirror.uri,
        [`${spec.suite}-InRelease`]: release.sha256,
        base: baseKey,
        "agent-bundle": agent.sha256,
      },
    };
    return {
      key,
      async build() {
        const rootfs = join(ctx.workDir, "rootfs");
        const debs = join(ctx.cacheDir, "debootstrap", spec.suite);
        const complete = join(baseDir, ".complete");
        const haveBase = await access(complete).then(
          () => true,
          () => false,
        );
        if (!haveBase) {
          const tmp = `${baseDir}.tmp`;
          const baseRoot = join(tmp, "rootfs");
          await ctx.step(`debootstrap ${spec.suite} (${spec.variant}) from ${mirror.uri}`, async () => {
            await mkdir(debs, { recursive: true });
            await unmountUnder(run, tmp);
            await run.run("rm", ["-rf", "--one-file-system", tmp]);
            await mkdir(tmp, { recursive: true });
            try {
              await run.run("debootstrap", [
                `--variant=${spec.variant}`,
                `--include=${spec.include.join(",")}`,
                "--components=main",
                `--cache-dir=${debs}`,
                ...(mirror.signedBy ? [`--keyring=${mirror.signedBy}`] : []),
                spec.suite,
                baseRoot,
                mirror.uri,
              ]);
            } finally {
              await unmountUnder(run, tmp);
            }
          });
          await ctx.step("prune the base and keep it for later builds", async () => {
            for (const p of spec.prune) await rm(join(baseRoot, p), { recursive: true, force: true });
            await mkdir(join(baseRoot, "var/cache/apt/archives/partial"), { recursive: true });
            await mkdir(join(baseRoot, "var/lib/apt/lists/partial"), { recursive: true });
            await writeFile(join(tmp, ".complete"), `${baseKey}\n`);
            // Older bases are of no further use.
            for (const old of await readdir(basesDir)) {
              const dir = join(basesDir, old);
              if (dir === tmp) continue;
              await unmountUnder(run, dir);
              await run.run("rm", ["-rf", "--one-file-system", dir]);
            }
            await rename(tmp, baseDir);
          });
        }
        await ctx.step(`copy the bootstrapped base${haveBase ? " (cached)" : ""}`, () =>
          run.run("cp", ["-a", "--reflink=auto", join(baseDir, "rootfs"), rootfs]),
        );
        const tree = new Tree(rootfs);
        let kernel = "";
        await ctx.step("configure the system (agent, units, network, boot loader)", async () => {
          const boot = await readdir(join(rootfs, "boot"));
          kernel = boot.find((f) => f.startsWith("vmlinuz-")) ?? "";
          const initrd = boot.find((f) => f.startsWith("initrd.img-"));
          if (!kernel || !initrd)
            throw new Error(`no kernel/initrd in the bootstrapped /boot: ${boot.join(" ")}`);
          const conf = (await readFile(join(ctx.recipesDir, "host/extlinux.conf"), "utf8"))
            .replaceAll("@KERNEL@", kernel)
            .replaceAll("@INITRD@", initrd);
          await tree.text("/boot/extlinux/extlinux.conf", conf);
          await tree.recipeFile(ctx.recipesDir, "host/fstab", "/etc/fstab");
          await tree.text("/etc/hostname", `${spec.hostname}\n`);
          await tree.text(
            "/etc/hosts",
            `127.0.0.1\tlocalhost\n127.0.1.1\t${spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
          );
          await tree.text("/etc/resolv.conf", "");
          // Empty: each host generates its own machine id on first boot.
          await tree.text("/etc/machine-id", "");
          await tree.recipeFile(
            ctx.recipesDir,
            "host/20-weft-dhcp.network",
            "/etc/systemd/network/20-weft-dhcp.network",
          );
          await tree.recipeFile(
            ctx.recipesDir,
            "host/wait-online.conf",
            "/etc/systemd/system/systemd-networkd-wait-online.service.d/weft.conf",
          );
          await tree.recipeFile(
            ctx.recipesDir,
            "host/weft-agent.service",
            "/etc/systemd/system/weft-agent.service",
          );
          await tree.text(
            "/etc/initramfs-tools/modules",
            `# Storage drivers for the root file system (MODULES=list).\n${spec.initramfsModules.join("\n")}\n`,
          );
          await tree.text("/etc/initramfs-tools/conf.d/weft", "MODULES=list\n");
          await tree.copy(spec.node, "/usr/local/bin/node", 0o755);
          await run.run("strip", ["--strip-unneeded", join(rootfs, "usr/local/bin/node")]);
          await tree.text("/usr/lib/weft/agent.mjs", agent.code);
          await tree.dirs("/etc/weft");
          await run.run("chmod", ["0700", join(rootfs, "etc/weft")]);
          await run.run("chroot", [rootfs, "systemctl", "enable", ...spec.enable]);
          // The copied Node must find its libraries in the image.
          await run.run("chroot", [rootfs, "/usr/local/bin/node", "--version"]);
        });
        await ctx.step("trim kernel modules and rebuild the initramfs", async () => {
          const release = kernel.replace(/^vmlinuz-/, "");
          const modules = join(rootfs, "usr/lib/modules", release, "kernel");
          for (const d of spec.dropModules) await rm(join(modules, d), { recursive: true, force: true });
          await run.run("chroot", [rootfs, "depmod", "-a", release]);
          await run.run("chroot", [rootfs, "update-initramfs", "-u", "-k", release]);
        });
        let hostPackages: Record<string, string> = {};
        await ctx.step("record package versions", async () => {
          hostPackages = await installedVersions(run, [], join(rootfs, "var/lib/dpkg"));
        });
        const img = join(ctx.workDir, "root.ext4");
        let imageBytes = 0;
        await ctx.step("make the ext4 image (mkfs.ext4 -d)", async () => {
          const { stdout } = await run.run("du", ["-s", "--block-size=1M", "--one-file-system", rootfs]);
          const usedMiB = Number.parseInt(stdout, 10);
          const sizeMiB = Math.ceil((usedMiB * 1.1) / 64) * 64 + spec.slackMiB;
          imageBytes = sizeMiB * 1024 * 1024;
          const uuid = uuidFromDigest(JSON.stringify(key));
          await run.run(
            "mkfs.ext4",
            [
              "-q",
              "-F",
              "-L",
              spec.rootLabel,
              "-U",
              uuid,
              "-E",
              `root_owner=0:0,hash_seed=${uuid}`,
              "-d",
              rootfs,
              img,
              `${sizeMiB}M`,
            ],
            { env: { E2FSPROGS_FAKE_TIME: "1767225600" } },
          );
          await run.run("e2fsck", ["-f", "-n", img]);
        });
        await ctx.step("remove the staged tree", () => run.run("rm", ["-rf", "--one-file-system", rootfs]));
        const gz = join(ctx.workDir, "host-bookworm.ext4.gz");
        await ctx.step("compress (pigz)", async () => {
          await run.run("pigz", [`-${spec.gzipLevel}`, "-n", "-c", img], { stdoutFile: gz });
          await truncate(img, 0);
        });
        return {
          packages: hostPackages,
          artifacts: [
            {
              name: "host-bookworm",
              kind: "host-rootfs",
              format: "ext4.gz",
              extension: "ext4.gz",
              path: gz,
              details: {
                compression: "gzip",
                filesystem: "ext4",
                label: spec.rootLabel,
                uncompressedSize: imageBytes,
                kernel,
                suite: spec.suite,
                mirror: mirror.uri,
                packageCount: Object.keys(hostPackages).length,
                bootloader:
                  "extlinux: /boot/extlinux/extlinux.conf (run extlinux --install /boot/extlinux after writing)",
                agentUnit: "weft-agent.service (WEFT_MODE=host, reads /etc/weft/agent.env)",
              },
            },
          ],
        };
      },
    };
  },
};
