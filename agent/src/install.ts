// install-host: lay out the disk, stream the host image onto partition 1, check it, grow the
// file system, give the host its identity, make the disk bootable, and ask for a reboot.
//
// Stages and their share of the progress bar: select-disk, partition (0-5 %), write-image
// (5-85 %, by compressed bytes received), verify (fsck, 85-90 %), resize (90-93 %),
// configure (93-96 %), bootloader (96-100 %).
import { lstat, mkdir, mkdtemp, readdir, readFile, rmdir, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import type { InstallHostParams } from "@weft/wire";
import type { CommandContext, CommandOutcome } from "./context.js";
import { selectDisk } from "./disks.js";
import { AgentError } from "./errors.js";
import { streamImage } from "./image-stream.js";
import { configureHost } from "./host-setup.js";
import {
  FIRST_SECTOR,
  ROOT_PARTITION_LABEL,
  hostLayoutCommands,
  parsePartitionGuid,
  waitForPartition,
  writeAt,
  zeroRange,
} from "./partition.js";

export const SUPPORTED_IMAGE_FORMATS = ["ext4.gz"] as const;

/** Only `ext4.gz` goes onto a partition as is; anything else is refused before the disk is touched. */
export function checkInstallFormat(format: string): void {
  if (!(SUPPORTED_IMAGE_FORMATS as readonly string[]).includes(format)) {
    throw new AgentError(
      "unsupported",
      "IMAGE_FORMAT_UNSUPPORTED",
      `install-host cannot write format ${JSON.stringify(format)}`,
      {
        details: { format, supported: SUPPORTED_IMAGE_FORMATS },
      },
    );
  }
}

/** A directory in the new root that is a real directory (not a symlink out of the image). */
async function realDir(mnt: string, rel: string): Promise<string> {
  let path = mnt;
  for (const part of rel.split("/").filter(Boolean)) {
    path = join(path, part);
    try {
      const st = await lstat(path);
      if (!st.isDirectory()) {
        throw new AgentError(
          "integrity",
          "IMAGE_UNSAFE_PATH",
          `/${rel} in the image is not a plain directory`,
          {
            details: { path: path.slice(mnt.length) },
          },
        );
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      await mkdir(path, { mode: 0o755 });
    }
  }
  return path;
}

/** Writes a file in the new root, refusing to follow a symlink the image placed there. */
async function writeRootFile(
  mnt: string,
  dir: string,
  name: string,
  data: string,
  mode: number,
): Promise<void> {
  const d = await realDir(mnt, dir);
  const path = join(d, name);
  const st = await lstat(path).catch(() => null);
  if (st && !st.isFile()) {
    throw new AgentError(
      "integrity",
      "IMAGE_UNSAFE_PATH",
      `/${dir}/${name} in the image is not a plain file`,
    );
  }
  await writeFile(path, data, { mode });
  await chmod(path, mode);
}

/** The extlinux configuration written when the image brings none. */
export function extlinuxConfig(kernel: string, initrd: string | null, partUuid: string | null): string {
  const root = partUuid !== null ? `PARTUUID=${partUuid}` : `LABEL=${ROOT_PARTITION_LABEL}`;
  return [
    "# Written by the weft agent at install time.",
    "DEFAULT weft",
    "TIMEOUT 1",
    "PROMPT 0",
    "SERIAL 0 115200",
    "LABEL weft",
    `  LINUX ${kernel}`,
    ...(initrd === null ? [] : [`  INITRD ${initrd}`]),
    `  APPEND root=${root} rw console=ttyS0,115200 console=tty0`,
    "",
  ].join("\n");
}

/**
 * The configuration with `args` added to each APPEND line (the kernel command line of every
 * entry), and how many lines took them. An argument already on a line is not added twice.
 */
export function appendKernelArgs(conf: string, args: readonly string[]): { text: string; lines: number } {
  let lines = 0;
  const text = conf
    .split("\n")
    .map((line) => {
      const m = /^(\s*APPEND\s+)(.*?)\s*$/i.exec(line);
      if (!m) return line;
      lines++;
      const have = new Set(m[2]!.split(/\s+/));
      const add = args.filter((a) => !have.has(a));
      return add.length === 0 ? line : `${m[1]}${m[2]} ${add.join(" ")}`;
    })
    .join("\n");
  return { text, lines };
}

/** Newest /boot/vmlinuz-<version> and its initrd, by version order. */
async function findKernel(mnt: string): Promise<{ kernel: string; initrd: string | null } | null> {
  const files = await readdir(join(mnt, "boot")).catch(() => [] as string[]);
  const versions = files
    .filter((f) => f.startsWith("vmlinuz-"))
    .map((f) => f.slice("vmlinuz-".length))
    .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const v = versions.at(-1);
  if (v === undefined) return null;
  return {
    kernel: `/boot/vmlinuz-${v}`,
    initrd: files.includes(`initrd.img-${v}`) ? `/boot/initrd.img-${v}` : null,
  };
}

export async function installHost(params: InstallHostParams, ctx: CommandContext): Promise<CommandOutcome> {
  const { exec, log, disks: s } = ctx;
  const image = params.image;
  if (ctx.firmware === "uefi") {
    throw new AgentError(
      "unsupported",
      "UEFI_NOT_SUPPORTED",
      "install-host supports legacy BIOS boot only (extlinux + gptmbr); this machine booted UEFI",
    );
  }
  checkInstallFormat(image.format);

  ctx.progress({ stage: "select-disk", progress: 0 });
  const disk = await selectDisk(s.root, params.disk, FIRST_SECTOR * 512 + image.size);
  const diskPath = join(s.devDir, disk.name);
  log.info("install-host: target disk", { disk: disk.name, bytes: disk.sizeBytes, image: image.name });

  ctx.progress({ stage: "partition", progress: 0.01, message: `partitioning ${disk.name}` });
  for (const args of hostLayoutCommands(diskPath)) await exec.run("sgdisk", args);
  const part = await waitForPartition(disk.name, 1, s, exec, ctx.clock, log);
  const partUuid = parsePartitionGuid((await exec.run("sgdisk", ["-i", "1", diskPath])).stdout);
  log.info("install-host: partition ready", {
    part: part.name,
    start: part.startSector,
    bytes: part.sizeBytes,
    partuuid: partUuid,
  });

  ctx.progress({ stage: "write-image", progress: 0.05, message: `writing ${image.name} to ${part.name}` });
  let lastShare = 0;
  try {
    const r = await streamImage({
      url: image.url,
      sha256: image.sha256,
      size: image.size,
      target: part.path,
      capacity: part.sizeBytes,
      fetch: ctx.fetch,
      clock: ctx.clock,
      log,
      onProgress: (p) => {
        const share = p.received / p.total;
        if (share - lastShare >= 0.05 || (share === 1 && lastShare < 1)) {
          lastShare = share;
          ctx.progress({ stage: "write-image", progress: Math.round((0.05 + 0.8 * share) * 1000) / 1000 });
        }
      },
    });
    const secs = Math.max(r.durationMs, 1) / 1000;
    log.info("install-host: image written and verified", {
      compressed: r.compressedBytes,
      written: r.writtenBytes,
      resumes: r.resumes,
      seconds: secs.toFixed(1),
      mibPerSecond: (r.writtenBytes / 1048576 / secs).toFixed(1),
    });
  } catch (err) {
    // Whatever reached the partition must never boot: clear the file system's superblock area.
    await zeroRange(part.path, 0, Math.min(1 << 20, part.sizeBytes)).catch((e: unknown) =>
      log.warn("could not clear the partial image", { error: (e as Error).message }),
    );
    throw err;
  }

  // No e2fsck here: the image was checked when it was built, and the sha256 of the stream plus
  // gzip's CRC of the output prove these are those bytes; a full check would only cost time.
  ctx.progress({ stage: "resize", progress: 0.9, message: "growing the file system to the partition" });
  await exec.run("resize2fs", [part.path]);

  ctx.progress({ stage: "configure", progress: 0.93 });
  await mkdir(s.mountBase, { recursive: true, mode: 0o700 });
  const mnt = await mkdtemp(join(s.mountBase, "root-"));
  let mounted = false;
  try {
    await exec.run("mount", ["-t", "ext4", part.path, mnt]);
    mounted = true;
    const identity = {
      machineId: params.host.machineId,
      hostname: params.host.hostname,
      controllerUrl: params.host.controllerUrl,
      token: params.host.token,
    };
    await writeRootFile(mnt, "etc/weft", "agent.json", `${JSON.stringify(identity, null, 2)}\n`, 0o600);
    await writeRootFile(mnt, "etc", "hostname", `${params.host.hostname}\n`, 0o644);
    await configureHost(mnt, params.tls ?? null);

    ctx.progress({ stage: "bootloader", progress: 0.96, message: "installing extlinux" });
    const extDir = await realDir(mnt, "boot/extlinux");
    const conf = join(extDir, "extlinux.conf");
    const hasConf = await lstat(conf).then(
      (st) => st.isFile(),
      () => false,
    );
    if (hasConf) {
      log.info("install-host: keeping the image's extlinux.conf");
    } else {
      const k = await findKernel(mnt);
      if (!k) {
        throw new AgentError(
          "integrity",
          "IMAGE_NOT_BOOTABLE",
          "the image has neither /boot/extlinux/extlinux.conf nor a /boot/vmlinuz-*",
        );
      }
      await writeRootFile(
        mnt,
        "boot/extlinux",
        "extlinux.conf",
        extlinuxConfig(k.kernel, k.initrd, partUuid),
        0o644,
      );
      log.info("install-host: wrote extlinux.conf", {
        kernel: k.kernel,
        root: partUuid ?? ROOT_PARTITION_LABEL,
      });
    }
    const kernelArgs = params.kernelArgs ?? [];
    if (kernelArgs.length > 0) {
      const r = appendKernelArgs(await readFile(conf, "utf8"), kernelArgs);
      if (r.lines === 0) {
        throw new AgentError(
          "unsupported",
          "KERNEL_ARGS_UNSUPPORTED",
          `the image's /boot/extlinux/extlinux.conf has no APPEND line to add ${kernelArgs.join(" ")} to`,
        );
      }
      await writeRootFile(mnt, "boot/extlinux", "extlinux.conf", r.text, 0o644);
      log.info("install-host: kernel arguments added", { args: kernelArgs.join(" "), entries: r.lines });
    }
    await exec.run("extlinux", ["--install", extDir]);
  } finally {
    if (mounted) await exec.run("umount", [mnt]);
    await rmdir(mnt).catch(() => undefined);
  }
  const mbr = await readFile(s.gptmbrPath).catch((err: unknown) => {
    throw new AgentError(
      "device",
      "BOOTLOADER_MISSING",
      `cannot read ${s.gptmbrPath}: ${(err as Error).message}`,
    );
  });
  if (mbr.length === 0 || mbr.length > 440) {
    throw new AgentError(
      "device",
      "BOOTLOADER_INVALID",
      `${s.gptmbrPath} is ${mbr.length} bytes; boot code must be 1..440`,
    );
  }
  await writeAt(diskPath, mbr, 0);
  await exec.run("sync", []);
  ctx.progress({ stage: "bootloader", progress: 1 });
  return { message: `installed ${image.name} on ${disk.name} (${part.name})`, then: "reboot" };
}
