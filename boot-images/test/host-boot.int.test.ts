// Opt-in (WEFT_IMAGES_BOOT_HOST=1; needs root and loop devices, and several minutes under TCG):
// installs the host image the way the agent does on a real disk — GPT with a legacy-BIOS-bootable
// partition, the image streamed through gunzip onto it, grown, extlinux installed, gptmbr.bin in
// the first 440 bytes — then boots that disk and waits for the agent's first line on the console.
import { execFileSync } from "node:child_process";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { buildImages } from "../src/build.js";
import { hostRecipe } from "../src/recipes/host.js";
import { startQemu, type Vm } from "./helpers/qemu.js";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cacheDir = process.env["WEFT_IMAGES_CACHE"] ?? "/var/cache/weft/images";
const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { stdio: "pipe" }).toString();

describe.skipIf(process.env["WEFT_IMAGES_BOOT_HOST"] !== "1")("host OS image", () => {
  let scratch = "";
  let loop = "";
  let mounted = "";
  let vm: Vm | undefined;

  afterAll(async () => {
    await vm?.stop();
    if (mounted) sh("umount", mounted);
    if (loop) sh("losetup", "-d", loop);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("installs onto a GPT disk and boots to the agent in host mode", async () => {
    const [outcome] = await buildImages({
      cacheDir,
      repoRoot: resolve(packageDir, ".."),
      recipesDir: join(packageDir, "recipes"),
      recipes: [hostRecipe],
      progress: (l) => void process.stderr.write(`  [images] ${l}\n`),
    });
    const m = outcome?.manifests[0];
    if (!m) throw new Error(outcome?.error?.message ?? "no host image");
    scratch = await mkdtemp(join(tmpdir(), "weft-host-boot-"));
    const disk = join(scratch, "disk.raw");
    sh("truncate", "-s", String(Number(m.details["uncompressedSize"]) + 1024 ** 3), disk);
    sh("sgdisk", "--new=1:2048:0", "--typecode=1:8300", "--attributes=1:set:2", disk);
    const last = Number(/Last sector: (\d+)/.exec(sh("sgdisk", "-i", "1", disk))?.[1]);
    loop = sh(
      "losetup",
      "-f",
      "--show",
      "-o",
      String(2048 * 512),
      "--sizelimit",
      String((last - 2048 + 1) * 512),
      disk,
    ).trim();
    await pipeline(
      createReadStream(join(cacheDir, m.recipe, m.file)),
      createGunzip(),
      createWriteStream(loop),
    );
    sh("e2fsck", "-f", "-p", loop);
    sh("resize2fs", loop);
    mounted = join(scratch, "root");
    await mkdir(mounted);
    sh("mount", loop, mounted);
    sh("extlinux", "--install", join(mounted, "boot/extlinux"));
    sh("umount", mounted);
    mounted = "";
    sh("losetup", "-d", loop);
    loop = "";
    sh(
      "dd",
      "if=/usr/lib/syslinux/mbr/gptmbr.bin",
      `of=${disk}`,
      "bs=440",
      "count=1",
      "conv=notrunc",
      "status=none",
    );

    vm = startQemu(
      [
        "-m",
        "2048",
        "-drive",
        `file=${disk},if=virtio,format=raw`,
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0",
      ],
      join(scratch, "host-serial.log"),
    );
    const seen = await vm.waitFor(/weft-agent: starting/, 900_000);
    process.stderr.write(`  [images] host OS: "weft-agent: starting" after ${seen.seconds.toFixed(1)} s\n`);
    expect(seen.text).toContain("weft.mode=host");
    expect(seen.text).toMatch(/Started .*weft-agent\.service/);
  }, 1_200_000);
});
