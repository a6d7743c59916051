import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Inventory } from "@weft/wire";
import { describe, expect, it } from "vitest";
import { listDisks, selectDisk } from "../src/disks.js";
import { createExec } from "../src/exec.js";
import {
  collectAddresses,
  collectInventory,
  parseCpuinfo,
  parseIpAddrJson,
  parseMeminfo,
} from "../src/inventory.js";
import { memoryLogger, silentLogger } from "../src/log.js";
import { stubRunner } from "./helpers/exec.js";
import { FIXTURES } from "./helpers/tmp.js";

const bios = join(FIXTURES, "bios-server");
const uefi = join(FIXTURES, "uefi-minimal");
const ipJson = (): Promise<string> => readFile(join(FIXTURES, "ip-addr.json"), "utf8");

describe("inventory from a fixture tree", () => {
  it("reads a BIOS server completely and matches the wire schema", async () => {
    const inv = await collectInventory({ root: bios, addresses: parseIpAddrJson(await ipJson()) });
    expect(Inventory.parse(inv)).toEqual(inv);
    expect(inv.firmware).toBe("bios");
    expect(inv.system).toEqual({
      uuid: "4c4c4544-0051-3010-8057-b4c04f4a4d32",
      serial: "CZJ12345XY",
      vendor: "QEMU",
      product: "Standard PC (i440FX + PIIX, 1996)",
    });
    expect(inv.cpu).toEqual({ count: 4, model: "AMD EPYC 7B13 64-Core Processor", mhz: 2449.998 });
    expect(inv.memoryBytes).toBe(4030084 * 1024);
    expect(inv.kernel).toBe("6.1.0-28-amd64");
  });

  it("lists disks in 512-byte sectors and skips loop, ram, sr and zram", async () => {
    const inv = await collectInventory({ root: bios, addresses: new Map() });
    expect(inv.disks).toEqual([
      {
        name: "sda",
        sizeBytes: 209715200 * 512,
        model: "QEMU HARDDISK",
        serial: "QM00001",
        rotational: false,
      },
      { name: "sdb", sizeBytes: 15728640 * 512, model: null, serial: null, rotational: false },
      { name: "vda", sizeBytes: 20 * 2 ** 30, model: null, serial: "weft-disk-0", rotational: true },
    ]);
  });

  it("lists hardware NICs only, lower-cases MACs and attaches addresses without link-local IPv6", async () => {
    const inv = await collectInventory({ root: bios, addresses: parseIpAddrJson(await ipJson()) });
    expect(inv.nics).toEqual([
      { name: "ens3", mac: "52:54:00:ab:cd:01", addresses: ["192.168.0.23/24"], speedMbps: 1000 },
      { name: "ens4", mac: "52:54:00:ab:cd:02", addresses: [], speedMbps: null },
    ]);
  });

  it("sees UEFI firmware and turns placeholder SMBIOS strings into null", async () => {
    const inv = await collectInventory({ root: uefi, addresses: new Map() });
    expect(inv.firmware).toBe("uefi");
    expect(inv.system).toEqual({ uuid: null, serial: null, vendor: null, product: null });
    expect(inv.disks).toEqual([
      {
        name: "nvme0n1",
        sizeBytes: 2097152 * 512,
        model: "QEMU NVMe Ctrl",
        serial: "deadbeef",
        rotational: null,
      },
    ]);
    expect(inv.nics).toEqual([]);
    expect(inv.kernel).toBeNull();
    expect(inv.cpu).toEqual({ count: 1, model: "QEMU Virtual CPU version 2.5+", mhz: null });
  });

  it("gets addresses through `ip -j addr`, falling back to Node when ip has no JSON (busybox)", async () => {
    const ok = stubRunner().stub("ip -j addr", { stdout: await ipJson() });
    const m = await collectAddresses(createExec(silentLogger, ok.runner), silentLogger);
    expect(m.get("ens3")).toEqual(["192.168.0.23/24"]);
    const busybox = stubRunner().stub("ip -j addr", { exitCode: 1, stderr: "ip: invalid option -- 'j'" });
    const log = memoryLogger();
    const fallback = await collectAddresses(createExec(log, busybox.runner), log);
    expect(fallback.get("lo")).toContain("127.0.0.1/8");
    expect(log.lines.some((l) => l.includes("using Node's interface list"))).toBe(true);
  });

  it("parses cpuinfo and meminfo edge cases", () => {
    expect(parseCpuinfo("")).toEqual({ count: 0, model: null, mhz: null });
    expect(parseMeminfo("MemFree: 1 kB\n")).toBeNull();
  });
});

describe("target disk choice", () => {
  it("takes the first non-removable, unmounted disk that is large enough", async () => {
    expect((await selectDisk(bios, null, 1 << 20)).name).toBe("sda");
    await expect(selectDisk(bios, null, 150 * 2 ** 30)).rejects.toMatchObject({
      code: "NO_TARGET_DISK",
      details: { skipped: { sda: "too small", sdb: "removable", vda: "too small" } },
    });
  });

  it("honours an explicit disk and refuses bad names, missing and small disks", async () => {
    expect((await selectDisk(bios, "vda", 1)).name).toBe("vda");
    await expect(selectDisk(bios, "../etc", 1)).rejects.toMatchObject({ code: "DISK_INVALID" });
    await expect(selectDisk(bios, "vdz", 1)).rejects.toMatchObject({ code: "DISK_NOT_FOUND" });
    await expect(selectDisk(bios, "vda", 2 ** 40)).rejects.toMatchObject({ code: "DISK_TOO_SMALL" });
    await expect(selectDisk(bios, "sdb", 1)).rejects.toMatchObject({ code: "DISK_BUSY" }); // boot media
  });

  it("reads partitions of a disk", async () => {
    const vda = (await listDisks(bios)).find((d) => d.name === "vda");
    expect(vda?.partitions).toEqual([
      { name: "vda1", number: 1, startSector: 2048, sizeBytes: 41940959 * 512 },
    ]);
  });
});
