import { describe, expect, it } from "vitest";
import {
  autoVcpus,
  checkConfig,
  labPaths,
  libvirtUri,
  serverIndex,
  serverMac,
  serverName,
} from "../src/config.js";
import { controllerArgs, serverKernelArgs } from "../src/controller.js";
import { cleanConsole } from "../src/lab.js";
import { checkTools } from "../src/preflight.js";
import { serverRegistrations } from "../src/register.js";

const config = { stateDir: "/var/lib/weft-lab", netns: "weft-lab", bridge: "weftbr0" };

describe("server names and MACs", () => {
  it.each([
    [1, "srv1", "52:54:00:77:00:01"],
    [9, "srv9", "52:54:00:77:00:09"],
    [10, "srv10", "52:54:00:77:00:0a"],
    [99, "srv99", "52:54:00:77:00:63"],
  ])("server %i is %s with MAC %s", (i, name, mac) => {
    expect(serverName(i)).toBe(name);
    expect(serverMac(i)).toBe(mac);
    expect(serverIndex(name)).toBe(i);
  });

  it.each(["srv0", "srv01", "srv100", "server1", "srv1 ", "", "SRV1"])(
    "does not take %j for a server name",
    (name) => {
      expect(serverIndex(name)).toBeUndefined();
    },
  );
});

describe("lab configuration", () => {
  it("accepts the defaults and a test lab", () => {
    expect(checkConfig(config)).toEqual(config);
    expect(
      checkConfig({ stateDir: "/tmp/weft-labtest-1/", netns: "weft-labtest", bridge: "weftbrt0" }).stateDir,
    ).toBe("/tmp/weft-labtest-1");
  });

  it.each([
    ["a namespace not starting with weft", { netns: "lab" }],
    ["a bridge not starting with weft", { bridge: "br0" }],
    ["a bridge name longer than 15 characters", { bridge: "weftbr0123456789" }],
    ["a relative state directory", { stateDir: "lab" }],
    ["a state directory under /run", { stateDir: "/run/weft-lab" }],
    ["a state directory under /var/lib/libvirt", { stateDir: "/var/lib/libvirt/weft" }],
    ["a state directory too long for sockets", { stateDir: `/tmp/${"x".repeat(90)}` }],
  ])("refuses %s", (_, change) => {
    expect(() => checkConfig({ ...config, ...change })).toThrowError(
      expect.objectContaining({ code: "LAB_BAD_INPUT" }),
    );
  });

  it("keeps every lab file inside the state directory", () => {
    const p = labPaths("/srv/lab");
    const all = [
      p.state,
      p.accel,
      p.servers,
      p.libvirt.socket,
      p.controllerSocket,
      p.disk("srv1"),
      p.console("srv1"),
    ];
    for (const f of all) expect(f.startsWith("/srv/lab/")).toBe(true);
    expect(p.console("srv3")).toBe("/srv/lab/srv3.console.log");
    expect(libvirtUri("/srv/lab")).toBe("qemu:///system?socket=/srv/lab/libvirt/sock/libvirt-sock");
  });
});

describe("vCPUs per server", () => {
  it("shares the cores among the servers, one to two each", () => {
    expect(autoVcpus(1, 2)).toBe(2);
    expect(autoVcpus(2, 2)).toBe(1);
    expect(autoVcpus(6, 2)).toBe(1);
    expect(autoVcpus(1, 1)).toBe(1);
    expect(autoVcpus(2, 16)).toBe(2);
  });
});

describe("preflight", () => {
  it("names the Debian packages that bring the missing tools", () => {
    const present = new Set(["ip", "nsenter", "unshare", "qemu-img", "dnsmasq"]);
    let err: unknown;
    try {
      checkTools((t) => (present.has(t) ? `/usr/bin/${t}` : undefined));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "LAB_MISSING_TOOL" });
    expect((err as { hint: string }).hint).toBe(
      "install the Debian packages: apt-get install qemu-system-x86 libvirt-daemon-system libvirt-clients",
    );
  });

  it("passes when everything is there", () => {
    expect(() => checkTools((t) => `/usr/bin/${t}`)).not.toThrow();
  });
});

describe("console cleaning", () => {
  it("removes terminal escapes and applies backspaces and carriage returns", () => {
    const raw = `\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\nWait...${"\b \b".repeat(7)}net0: up\r\nConfiguring\r ok\r\n`;
    expect(cleanConsole(raw)).toBe("SeaBIOS (version 1.16.2)\nnet0: up\n okfiguring\n");
    // OVMF's mode setting
    expect(cleanConsole("\x1b[=3h\x1b[=3hBdsDxe: loading Boot0001")).toBe("BdsDxe: loading Boot0001");
  });
});

describe("the lab's controller", () => {
  it("keeps its state in the lab, answers where weft looks by default, and serves netboot on the bridge", () => {
    expect(controllerArgs(config)).toEqual([
      "--data-dir",
      "/var/lib/weft-lab/controller",
      "--socket",
      "/run/weft/weft.sock",
      "--token-file",
      "/var/lib/weft/admin.token",
      "--listen",
      "10.77.0.1:7480",
      "--netboot-address",
      "10.77.0.1",
      "--dhcp-subnet",
      "10.77.0.0/24",
      "--dhcp-range",
      "10.77.0.100-10.77.0.199",
    ]);
  });

  it("trusts the TSC of servers with several vCPUs under TCG, in the maintenance OS and once installed", () => {
    expect(serverKernelArgs("tcg", 1)).toEqual([]);
    expect(serverKernelArgs("kvm", 2)).toEqual([]);
    expect(serverKernelArgs("tcg", 2)).toEqual(["tsc=reliable"]);
    expect(controllerArgs(config, ["tsc=reliable"]).slice(-4)).toEqual([
      "--maintenance-cmdline",
      "console=ttyS0,115200 quiet tsc=reliable",
      "--host-kernel-args",
      "tsc=reliable",
    ]);
  });

  it("keeps a test lab's socket and token in its own state directory", () => {
    const args = controllerArgs({ ...config, stateDir: "/tmp/lab-x" });
    expect(args.slice(2, 6)).toEqual([
      "--socket",
      "/tmp/lab-x/controller.sock",
      "--token-file",
      "/tmp/lab-x/controller/admin.token",
    ]);
  });
});

describe("server registrations", () => {
  it("have the shape of the controller's machine registration, with the libvirt power driver", () => {
    expect(serverRegistrations(config, [{ name: "srv1", mac: "52:54:00:77:00:01" }])).toEqual([
      {
        name: "srv1",
        macs: ["52:54:00:77:00:01"],
        powerDriver: "libvirt",
        powerParams: {
          uri: "qemu:///system?socket=/var/lib/weft-lab/libvirt/sock/libvirt-sock",
          domain: "srv1",
        },
      },
    ]);
  });
});
