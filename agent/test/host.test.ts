import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ControllerClient } from "../src/client.js";
import { createExec } from "../src/exec.js";
import {
  collectHostRegistration,
  defaultRouteInterface,
  detectKvm,
  parseLibvirtVersion,
  runHost,
} from "../src/host.js";
import { parseIpAddrJson } from "../src/inventory.js";
import { memoryLogger, silentLogger } from "../src/log.js";
import { fastClock } from "./helpers/clock.js";
import { stubRunner } from "./helpers/exec.js";
import { fakeController, type FakeController } from "./helpers/fake-controller.js";
import { FIXTURES } from "./helpers/tmp.js";

const bios = join(FIXTURES, "bios-server");
const addresses = parseIpAddrJson(
  JSON.stringify([
    { ifname: "lo", addr_info: [{ family: "inet", local: "127.0.0.1", prefixlen: 8 }] },
    {
      ifname: "ens3",
      addr_info: [{ family: "inet", local: "192.168.0.23", prefixlen: 24, scope: "global" }],
    },
  ]),
);
const VIRSH = "virsh --connect qemu:///system version --daemon";
const virshOut =
  "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 9.0.0\n";

let ctl: FakeController | undefined;
afterEach(async () => {
  await ctl?.close();
  ctl = undefined;
});

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("host mode", { timeout: 30_000 }, () => {
  it("measures capacity from the fixture tree, libvirt through virsh, and the default-route address", async () => {
    const stub = stubRunner().stub(VIRSH, { stdout: virshOut });
    const reg = await collectHostRegistration({
      root: bios,
      diskPath: bios,
      exec: createExec(silentLogger, stub.runner),
      log: silentLogger,
      addresses,
    });
    expect(reg.capacity).toMatchObject({ cpus: 4, cpuMhz: 2450, memoryMiB: 3935, kvm: true });
    expect(reg.capacity.diskBytes).toBeGreaterThan(0);
    expect(reg.libvirt).toEqual({ uri: "qemu:///system", version: "9.0.0" });
    expect(reg.address).toBe("192.168.0.23");
  });

  it("falls back to libvirtd --version, then to null", async () => {
    const stub = stubRunner()
      .stub(VIRSH, { exitCode: 1, stderr: "failed to connect" })
      .stub("libvirtd --version", { stdout: "libvirtd (libvirt) 9.0.0\n" });
    const reg = await collectHostRegistration({
      root: bios,
      diskPath: bios,
      exec: createExec(silentLogger, stub.runner),
      log: silentLogger,
      addresses,
    });
    expect(reg.libvirt.version).toBe("9.0.0");
    expect(parseLibvirtVersion("nothing")).toBeNull();
  });

  it("counts /dev/kvm only when it opens and a vendor KVM module is loaded", async () => {
    await expect(detectKvm(bios)).resolves.toMatchObject({ usable: true, reason: "kvm_amd" });
    await expect(detectKvm(join(FIXTURES, "uefi-minimal"))).resolves.toMatchObject({ usable: false });
  });

  it("finds the default route's interface", () => {
    expect(
      defaultRouteInterface(
        "Iface\tDestination\tGateway\nens3\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n",
      ),
    ).toBe("ens3");
    expect(defaultRouteInterface("Iface\n")).toBeNull();
  });

  it("registers with the host token, heartbeats in host mode, and stops on a refused token", async () => {
    ctl = await fakeController({ nonce: "unused-nonce-0123456789", token: "host-tok" });
    const clock = fastClock();
    const stop = new AbortController();
    const cfg = {
      mode: "host" as const,
      machineId: "m-1",
      hostname: "h1",
      controllerUrl: ctl.url,
      token: "host-tok",
    };
    const reg = {
      capacity: { cpus: 4, cpuMhz: 2450, memoryMiB: 3935, diskBytes: 10, kvm: true },
      libvirt: { uri: "qemu:///system", version: "9.0.0" },
      address: "192.168.0.23",
    };
    const watcher = setInterval(() => ctl && ctl.heartbeats.length >= 2 && stop.abort(), 10);
    await runHost({
      config: cfg,
      client: new ControllerClient({ baseUrl: ctl.url, clock }),
      log: memoryLogger(),
      clock,
      random: () => 0,
      registration: () => Promise.resolve(reg),
      uptimeSeconds: () => 5,
      signal: stop.signal,
    }).finally(() => clearInterval(watcher));
    expect(ctl.registrations).toEqual([reg]);
    expect(ctl.heartbeats[0]).toEqual({ mode: "host", uptimeSeconds: 5, running: [] });

    await expect(
      runHost({
        config: { ...cfg, token: "stale" },
        client: new ControllerClient({ baseUrl: ctl.url, clock }),
        log: memoryLogger(),
        clock,
        random: () => 0,
        registration: () => Promise.resolve(reg),
        uptimeSeconds: () => 5,
      }),
    ).rejects.toMatchObject({ code: "TOKEN_REFUSED", message: expect.stringContaining("m-1") });
  });
});
