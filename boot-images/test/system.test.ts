import { describe, expect, it } from "vitest";
import { parseDpkgSearch, parsePackageVersions } from "../src/system/dpkg.js";
import { parseLoaderList } from "../src/system/elf.js";
import { moduleName, parseModulesDep, resolveModules } from "../src/system/kernel.js";
import { mountsUnder } from "../src/system/mounts.js";

describe("modules.dep", () => {
  const DEP = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/crypto/crc32c_generic.ko.xz:
`;
  const dep = parseModulesDep(DEP);

  it("names modules like the kernel does", () => {
    expect(moduleName("kernel/drivers/net/e1000e/e1000e.ko")).toBe("e1000e");
    expect(moduleName("kernel/lib/crc-t10dif.ko.zst")).toBe("crc_t10dif");
  });

  it("orders every module after its dependencies", () => {
    const order = resolveModules(dep, new Set(), ["virtio_net"]);
    expect(order).toEqual([
      "kernel/net/core/failover.ko",
      "kernel/drivers/net/net_failover.ko",
      "kernel/drivers/virtio/virtio_ring.ko",
      "kernel/drivers/virtio/virtio.ko",
      "kernel/drivers/net/virtio_net.ko",
    ]);
  });

  it("lists a shared dependency once and keeps the requested order", () => {
    const order = resolveModules(dep, new Set(), ["crc32c-generic", "ext4", "virtio_net", "ext4"]);
    expect(order[0]).toBe("kernel/crypto/crc32c_generic.ko.xz");
    expect(order.filter((m) => m.endsWith("failover.ko"))).toHaveLength(2);
    expect(order.indexOf("kernel/fs/ext4/ext4.ko")).toBeGreaterThan(order.indexOf("kernel/fs/jbd2/jbd2.ko"));
    expect(new Set(order).size).toBe(order.length);
  });

  it("skips built-in drivers and refuses unknown ones", () => {
    expect(resolveModules(dep, new Set(["virtio_pci"]), ["virtio_pci"])).toEqual([]);
    expect(() => resolveModules(dep, new Set(), ["no_such_driver"])).toThrow(/no_such_driver/);
  });
});

describe("dynamic loader listing", () => {
  it("returns library paths and the loader, skipping the vDSO", () => {
    const text = `\tlinux-vdso.so.1 (0x00007ffd)
\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f80)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f81)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f82)
`;
    expect(parseLoaderList(text)).toEqual([
      "/lib/x86_64-linux-gnu/libstdc++.so.6",
      "/lib/x86_64-linux-gnu/libm.so.6",
      "/lib64/ld-linux-x86-64.so.2",
    ]);
  });

  it("fails on a missing library", () => {
    expect(() => parseLoaderList("\tlibfoo.so.1 => not found\n")).toThrow(/libfoo/);
  });
});

describe("dpkg output", () => {
  it("maps paths to their first owner, without architecture or diversions", () => {
    const m = parseDpkgSearch(`libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6
diversion by dash from: /bin/sh
busybox-static: /bin/busybox
libgcc-s1:amd64, lib32gcc-s1: /usr/share/doc/x
`);
    expect(Object.fromEntries(m)).toEqual({
      "/lib/x86_64-linux-gnu/libc.so.6": "libc6",
      "/bin/busybox": "busybox-static",
      "/usr/share/doc/x": "libgcc-s1",
    });
  });

  it("reads package\\tversion lines", () => {
    expect(parsePackageVersions("gdisk\t1.0.9-2.1\nnodejs\t20.20.2-1nodesource1\n\n")).toEqual({
      gdisk: "1.0.9-2.1",
      nodejs: "20.20.2-1nodesource1",
    });
  });
});

describe("mounts under a folder", () => {
  it("finds nested mounts deepest first, decoding escapes, not siblings", () => {
    const table = `proc /proc proc rw 0 0
proc /w/work/host/rootfs/proc proc rw 0 0
sysfs /w/work/host/rootfs/sys sysfs rw 0 0
devpts /w/work/host/rootfs/dev/pts devpts rw 0 0
tmpfs /w/work/host2 tmpfs rw 0 0
tmpfs /w/work/host/with\\040space tmpfs rw 0 0
`;
    expect(mountsUnder(table, "/w/work/host/")).toEqual([
      "/w/work/host/rootfs/dev/pts",
      "/w/work/host/rootfs/proc",
      "/w/work/host/rootfs/sys",
      "/w/work/host/with space",
    ]);
  });
});
