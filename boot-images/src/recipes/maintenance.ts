// The maintenance OS: Debian's kernel and an initramfs with busybox, the storage and network
// drivers, Node and the agent bundle, and the disk tools the agent installs hosts with.
import { access, copyFile } from "node:fs/promises";
import { join } from "node:path";
import { packInitramfs } from "../parts/initramfs.js";
import { Tree } from "../parts/tree.js";
import { installedVersions, owningPackages } from "../system/dpkg.js";
import { sharedLibraries } from "../system/elf.js";
import { findKernel, modulesToLoad } from "../system/kernel.js";
import { hashRecipeFiles, type Recipe } from "./recipe.js";

export const MAINTENANCE_SPEC = {
  /** Bumped when the builder code (not just this data) changes what the recipe produces. */
  revision: 1,
  kernelPackage: "linux-image-amd64",
  busybox: "/bin/busybox",
  node: "/usr/bin/node",
  /** Loaded in this order (each after its dependencies); crc drivers first for ext4 and sd. */
  modules: [
    "crc32c_generic",
    "crct10dif_generic",
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "e1000",
    "e1000e",
    "ahci",
    "sd_mod",
    "ext4",
  ],
  tools: [
    "/usr/sbin/sgdisk",
    "/usr/sbin/mke2fs",
    "/usr/sbin/e2fsck",
    "/usr/sbin/resize2fs",
    "/usr/bin/extlinux",
    "/usr/bin/qemu-img",
  ],
  /** Used when present (util-linux's sfdisk lives in the `fdisk` package). */
  optionalTools: ["/usr/sbin/sfdisk"],
  data: ["/usr/lib/syslinux/mbr/gptmbr.bin", "/etc/mke2fs.conf"],
  links: { "/usr/sbin/mkfs.ext4": "mke2fs", "/usr/sbin/fsck.ext4": "e2fsck" },
  stripNode: true,
  // lz4 rather than zstd: about 12 MiB larger (49.0 against 36.6 MiB), but unpacked about 3 s
  // sooner under TCG.
  compression: { kind: "lz4" },
  files: ["maintenance/init", "common/udhcpc.script"],
} as const;

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  );

export const maintenanceRecipe: Recipe = {
  name: "maintenance",
  artifacts: ["maintenance-kernel", "maintenance-initrd"],
  async plan(ctx) {
    const spec = MAINTENANCE_SPEC;
    const { run } = ctx;
    const kernel = await findKernel(run, spec.kernelPackage);
    const optional: string[] = [];
    for (const t of spec.optionalTools) if (await exists(t)) optional.push(t);
    const programs = [spec.node, ...spec.tools, ...optional];
    const libs = await sharedLibraries(run, programs);
    const hostFiles = [spec.busybox, ...programs, ...libs, ...spec.data];
    const pkgNames = [
      ...new Set([...(await owningPackages(run, hostFiles)), kernel.package, spec.kernelPackage]),
    ];
    const packages = await installedVersions(run, pkgNames);
    const agent = await ctx.agent();
    const files = await hashRecipeFiles(ctx.recipesDir, spec.files);

    return {
      key: {
        recipe: "maintenance",
        spec: { ...spec, optionalPresent: optional },
        files,
        packages,
        extra: { "agent-bundle": agent.sha256, "kernel-release": kernel.release },
      },
      async build() {
        const tree = new Tree(join(ctx.workDir, "initramfs"));
        await ctx.step("stage the initramfs tree", async () => {
          await tree.dirs(
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/tmp",
            "/mnt",
            "/root",
            "/etc/weft",
            "/var/lib/weft",
          );
          await tree.recipeFile(ctx.recipesDir, "maintenance/init", "/init", 0o755);
          await tree.recipeFile(
            ctx.recipesDir,
            "common/udhcpc.script",
            "/usr/share/udhcpc/default.script",
            0o755,
          );
          await tree.programs(run, [...spec.tools, ...optional]);
          for (const [link, target] of Object.entries(spec.links)) await tree.link(link, target);
          for (const d of spec.data) await tree.copy(d);
          await tree.programs(run, [spec.node]);
          if (spec.stripNode) {
            await run.run("strip", ["--strip-unneeded", join(tree.root, spec.node)]);
          }
          await tree.text("/usr/lib/weft/agent.mjs", agent.code);
          await tree.text("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
          await tree.text("/etc/group", "root:x:0:\n");
          await tree.text("/etc/hostname", "weft-maintenance\n");
          await tree.text(
            "/etc/weft/release.json",
            `${JSON.stringify({ image: "maintenance", kernel: kernel.release, agentSha256: agent.sha256 })}\n`,
          );
          await tree.busybox(run, spec.busybox);
        });
        await ctx.step("copy kernel modules (modules.dep)", async () => {
          const mods = await modulesToLoad(kernel, spec.modules);
          for (const m of mods)
            await tree.copy(join(kernel.modulesDir, m), join("/lib/modules", kernel.release, m));
          await tree.text("/etc/weft/modules.order", `${mods.join("\n")}\n`);
        });
        const initrd = join(ctx.workDir, "initrd.cpio.lz4");
        await ctx.step("pack the initramfs (cpio + lz4)", () =>
          packInitramfs(run, tree.root, initrd, spec.compression),
        );
        const vmlinuz = join(ctx.workDir, "vmlinuz");
        await ctx.step("copy the kernel", () => copyFile(kernel.vmlinuz, vmlinuz));
        const details = { kernelRelease: kernel.release, cmdline: "console=ttyS0" };
        return {
          artifacts: [
            {
              name: "maintenance-kernel",
              kind: "kernel",
              format: "bzImage",
              extension: "vmlinuz",
              path: vmlinuz,
              details,
            },
            {
              name: "maintenance-initrd",
              kind: "initrd",
              format: "cpio.lz4",
              extension: "cpio.lz4",
              path: initrd,
              details: { ...details, agentSha256: agent.sha256 },
            },
          ],
        };
      },
    };
  },
};
