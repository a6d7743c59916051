import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fakeClock } from "../src/clock.js";
import type { CommandContext } from "../src/context.js";
import { AgentError } from "../src/errors.js";
import { createExec } from "../src/exec.js";
import { memoryLogger } from "../src/log.js";
import { wipeDisks } from "../src/wipe.js";
import { stubRunner, type StubbedRunner } from "./helpers/exec.js";
import { cleanup, tempDir } from "./helpers/tmp.js";

const MIB = 1 << 20;
let dir: string;
let root: string;
let dev: string;
let stub: StubbedRunner;
let ctx: CommandContext;
let log: ReturnType<typeof memoryLogger>;

async function disk(name: string, mib: number, parts: number[] = []): Promise<void> {
  const w = async (p: string, s: string): Promise<void> => {
    await mkdir(join(root, p, ".."), { recursive: true });
    await writeFile(join(root, p), `${s}\n`);
  };
  await w(`sys/block/${name}/size`, String((mib * MIB) / 512));
  await w(`sys/block/${name}/removable`, "0");
  await w(`sys/block/${name}/ro`, "0");
  await writeFile(join(dev, name), Buffer.alloc(mib * MIB, 0xff));
  let start = 2048;
  for (const [i, pm] of parts.entries()) {
    const p = `${name}${i + 1}`;
    await w(`sys/block/${name}/${p}/partition`, String(i + 1));
    await w(`sys/block/${name}/${p}/start`, String(start));
    await w(`sys/block/${name}/${p}/size`, String((pm * MIB) / 512));
    await writeFile(join(dev, p), Buffer.alloc(pm * MIB, 0xff));
    start += (pm * MIB) / 512;
  }
}

beforeEach(async () => {
  dir = await tempDir();
  root = join(dir, "root");
  dev = join(dir, "dev");
  await mkdir(join(root, "proc"), { recursive: true });
  await mkdir(dev);
  await writeFile(join(root, "proc/mounts"), "rootfs / rootfs rw 0 0\n");
  await disk("vda", 8, [3, 4]);
  await disk("sda", 4);
  await disk("loop0", 1);
  stub = stubRunner()
    .stub(/^wipefs -a /)
    .stub(/^sgdisk --zap-all /)
    .stub("sync");
  log = memoryLogger();
  const clock = fakeClock();
  ctx = {
    exec: createExec(log, stub.runner, clock),
    log,
    clock,
    fetch: globalThis.fetch,
    firmware: "bios",
    disks: {
      root,
      devDir: dev,
      gptmbrPath: "/nonexistent",
      mountBase: dir,
      partitionWaitMs: 1000,
      rescanCommands: [],
    },
    progress: () => undefined,
  };
}, 30_000);
afterEach(async () => {
  expect(stub.unstubbed).toEqual([]);
  await cleanup(dir);
});

const zeroed = (b: Buffer): boolean => b.every((x) => x === 0);

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("wipe", { timeout: 30_000 }, () => {
  it("wipes partition signatures, then the disk, zaps GPT and zeroes the first and last MiB", async () => {
    const out = await wipeDisks({ disks: ["vda"] }, ctx);
    expect(out).toEqual({ message: "wiped vda" });
    expect(stub.calls).toEqual([
      `wipefs -a ${dev}/vda1`,
      `wipefs -a ${dev}/vda2`,
      `wipefs -a ${dev}/vda`,
      `sgdisk --zap-all ${dev}/vda`,
      "sync",
    ]);
    const d = await readFile(join(dev, "vda"));
    expect(zeroed(d.subarray(0, MIB))).toBe(true);
    expect(zeroed(d.subarray(d.length - MIB))).toBe(true);
    expect(d.subarray(MIB, d.length - MIB).every((x) => x === 0xff)).toBe(true);
    expect(out.then).toBeUndefined(); // reboot is a separate command
  });

  it("wipes every machine disk when none is named (never loop devices)", async () => {
    await wipeDisks({ disks: null }, ctx);
    expect(stub.calls.filter((c) => c.startsWith("sgdisk"))).toEqual([
      `sgdisk --zap-all ${dev}/sda`,
      `sgdisk --zap-all ${dev}/vda`,
    ]);
  });

  it("zeroes partition ends itself where wipefs is missing", async () => {
    stub = stubRunner()
      .stub(/^wipefs /, () => {
        throw new AgentError("exec", "EXEC_NOT_FOUND", "wipefs: command not found");
      })
      .stub(/^sgdisk --zap-all /)
      .stub("sync");
    ctx = { ...ctx, exec: createExec(log, stub.runner) };
    await wipeDisks({ disks: ["vda"] }, ctx);
    const p2 = await readFile(join(dev, "vda2"));
    expect(zeroed(p2.subarray(0, MIB)) && zeroed(p2.subarray(p2.length - MIB))).toBe(true);
    expect(log.lines.some((l) => l.includes("wipefs is not installed"))).toBe(true);
  });

  it("refuses a disk with a mounted file system, a bad name or a missing disk, touching nothing", async () => {
    await writeFile(join(root, "proc/mounts"), "/dev/vda2 /mnt ext4 rw 0 0\n");
    await expect(wipeDisks({ disks: ["vda"] }, ctx)).rejects.toMatchObject({ code: "DISK_BUSY" });
    await expect(wipeDisks({ disks: ["../x"] }, ctx)).rejects.toMatchObject({ code: "DISK_INVALID" });
    await expect(wipeDisks({ disks: ["vdq"] }, ctx)).rejects.toMatchObject({ code: "DISK_NOT_FOUND" });
    expect(stub.calls).toEqual([]);
  });
});
