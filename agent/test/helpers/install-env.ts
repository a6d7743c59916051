// A fake machine for install-host with a stubbed exec: a /sys tree with one disk, /dev with
// plain files standing in for the disk and its partition, a gptmbr file, and stubs for every
// command install-host runs. The stub for `sgdisk -n` makes partition 1 appear in /sys and
// /dev, as the kernel would.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { InstallHostParams } from "@weft/wire";
import { fakeClock } from "../../src/clock.js";
import type { CommandContext, DiskSettings, ProgressUpdate } from "../../src/context.js";
import { createExec } from "../../src/exec.js";
import { memoryLogger } from "../../src/log.js";
import { stubRunner, type StubbedRunner } from "./exec.js";
import { tempDir } from "./tmp.js";

export const PART_GUID = "6a3c2a71-8f0e-4d7b-9a55-3c1f2b7e90aa";
export const DISK_BYTES = 16 << 20;

export interface InstallEnv {
  dir: string;
  settings: DiskSettings;
  stub: StubbedRunner;
  ctx: CommandContext;
  updates: ProgressUpdate[];
  log: ReturnType<typeof memoryLogger>;
  raw: Buffer;
  gz: Buffer;
  sha256: string;
  mbr: Buffer;
  /** The directory the stubbed `mount` was given. */
  mountPoint: () => string;
  params: (url: string, over?: Partial<InstallHostParams["image"]>) => InstallHostParams;
}

export interface InstallEnvOptions {
  /** When partition 1 shows up: after `sgdisk -n` (default), after a rescan command, or never. */
  partitionAppears?: "sgdisk" | "rescan" | "never";
  /** What the stubbed mount puts in the "file system". */
  imageHas?: "extlinux.conf" | "kernel" | "nothing";
}

export async function installEnv(opts: InstallEnvOptions = {}): Promise<InstallEnv> {
  const dir = await tempDir();
  const root = join(dir, "root");
  const devDir = join(dir, "dev");
  await mkdir(join(root, "sys/block/vda/queue"), { recursive: true });
  await mkdir(join(root, "proc"), { recursive: true });
  await mkdir(devDir);
  const w = (p: string, s: string): Promise<void> => writeFile(join(root, p), `${s}\n`);
  await w("sys/block/vda/size", String(DISK_BYTES / 512));
  await w("sys/block/vda/removable", "0");
  await w("sys/block/vda/ro", "0");
  await w("sys/block/vda/queue/rotational", "1");
  await w("proc/mounts", "rootfs / rootfs rw 0 0");
  await writeFile(join(devDir, "vda"), Buffer.alloc(DISK_BYTES));
  const mbr = Buffer.alloc(440, 0x5a);
  const gptmbrPath = join(dir, "gptmbr.bin");
  await writeFile(gptmbrPath, mbr);

  const partSectors = DISK_BYTES / 512 - 2048 - 34;
  const makePartition = async (): Promise<void> => {
    await mkdir(join(root, "sys/block/vda/vda1"), { recursive: true });
    await w("sys/block/vda/vda1/partition", "1");
    await w("sys/block/vda/vda1/start", "2048");
    await w("sys/block/vda/vda1/size", String(partSectors));
    await writeFile(join(devDir, "vda1"), Buffer.alloc(partSectors * 512));
  };

  const raw = Buffer.concat([randomBytes(256 * 1024), Buffer.alloc(3 << 20, 7)]);
  const gz = gzipSync(raw);
  const sha256 = createHash("sha256").update(gz).digest("hex");
  const disk = join(devDir, "vda");
  const part = join(devDir, "vda1");
  let mnt = "";
  const appears = opts.partitionAppears ?? "sgdisk";
  const stub = stubRunner()
    .stub(`sgdisk -Z ${disk}`)
    .stub(`sgdisk -n 1:2048:0 -t 1:8300 -A 1:set:2 -c 1:weft-root ${disk}`, async () => {
      if (appears === "sgdisk") await makePartition();
      return {};
    })
    .stub(`blockdev --rereadpt ${disk}`, async () => {
      if (appears === "rescan") await makePartition();
      return {};
    })
    .stub(`partx -a ${disk}`, { exitCode: 127, stderr: "partx: not found" })
    .stub(`sgdisk -i 1 ${disk}`, {
      stdout: `Partition GUID code: 0FC63DAF-8483-4772-8E79-3D69D8477DE4 (Linux filesystem)\nPartition unique GUID: ${PART_GUID.toUpperCase()}\nFirst sector: 2048 (at 1024.0 KiB)\nAttribute flags: 0000000000000004\nPartition name: 'weft-root'\n`,
    })
    .stub(`e2fsck -fy ${part}`, { exitCode: 1 })
    .stub(`resize2fs ${part}`)
    .stub(/^mount -t ext4 /, async (args) => {
      mnt = args[3] ?? "";
      if (opts.imageHas !== "nothing") {
        await mkdir(join(mnt, "boot/extlinux"), { recursive: true });
        await writeFile(join(mnt, "boot/vmlinuz-6.1.0-28-amd64"), "kernel");
        await writeFile(join(mnt, "boot/initrd.img-6.1.0-28-amd64"), "initrd");
        if (opts.imageHas === "extlinux.conf") {
          await writeFile(join(mnt, "boot/extlinux/extlinux.conf"), "DEFAULT image\n");
        }
      }
      return {};
    })
    .stub(/^extlinux --install /)
    .stub(/^umount /)
    .stub("sync");
  const log = memoryLogger();
  const clock = fakeClock();
  const updates: ProgressUpdate[] = [];
  const settings: DiskSettings = {
    root,
    devDir,
    gptmbrPath,
    mountBase: join(dir, "mnt"),
    partitionWaitMs: 5000,
    rescanCommands: [
      ["blockdev", "--rereadpt"],
      ["partx", "-a"],
    ],
  };
  const ctx: CommandContext = {
    exec: createExec(log, stub.runner, clock),
    log,
    clock,
    fetch: globalThis.fetch,
    disks: settings,
    firmware: "bios",
    progress: (u) => updates.push(u),
  };
  return {
    dir,
    settings,
    stub,
    ctx,
    updates,
    log,
    raw,
    gz,
    sha256,
    mbr,
    mountPoint: () => mnt,
    params: (url, over = {}) => ({
      image: { name: "host-bookworm", url, sha256, size: gz.length, format: "ext4.gz", ...over },
      disk: null,
      host: {
        machineId: "m-42",
        hostname: "rack1-u07",
        controllerUrl: "http://10.0.0.1:8080",
        token: "tok-secret-42",
      },
    }),
  };
}
