import { describe, expect, it } from "vitest";
import { DomainState } from "@unraid/libvirt";
import { PowerError } from "../src/power/driver.js";
import {
  LibvirtPowerDriver,
  classifyLibvirtMessage,
  powerStateOf,
  type LibvirtConnect,
  type LibvirtDomainHandle,
} from "../src/power/libvirt.js";

const URI = "qemu:///system?socket=/var/lib/weft-lab/libvirt/sock/libvirt-sock";

/** A stand-in libvirt with one domain; messages are the ones libvirt really produces. */
function fakeLibvirt(initial: DomainState) {
  let state = initial;
  const log: string[] = [];
  const dom: LibvirtDomainHandle = {
    state: async () => state,
    start: async () => {
      log.push("start");
      if (state === DomainState.RUNNING)
        throw new Error("Requested operation is not valid: domain is already running");
      state = DomainState.RUNNING;
    },
    destroy: async () => {
      log.push("destroy");
      if (state !== DomainState.RUNNING)
        throw new Error("Requested operation is not valid: domain is not running");
      state = DomainState.SHUTOFF;
    },
  };
  const connect: LibvirtConnect = async (uri) => {
    log.push(`open ${uri}`);
    return {
      lookup: async (name) => {
        if (name !== "srv1") throw new Error(`Domain not found: no domain with matching name '${name}'`);
        return dom;
      },
      close: async () => {
        log.push("close");
      },
    };
  };
  return { connect, log, state: () => state };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "none";
  } catch (err) {
    if (err instanceof PowerError) return err.code;
    throw err;
  }
}

describe("libvirt power parameters", () => {
  const d = new LibvirtPowerDriver({ connect: () => Promise.reject(new Error("validate must not connect")) });

  it.each([
    [{ uri: "qemu:///system", domain: "srv1" }],
    [{ uri: URI, domain: "srv12" }],
    [{ uri: "qemu+ssh://root@host/system", domain: "guest-a.b_c" }],
  ])("accepts %j", (params) => {
    expect(d.validate(params)).toEqual({ ok: true, params });
  });

  it.each([
    ["no domain", { uri: "qemu:///system" }],
    ["no uri", { domain: "srv1" }],
    ["an empty domain", { uri: "qemu:///system", domain: "" }],
    ["a slash in the domain", { uri: "qemu:///system", domain: "../srv1" }],
    ["a control character in the domain", { uri: "qemu:///system", domain: "srv\n1" }],
    ["a uri without a scheme", { uri: "/run/libvirt/libvirt-sock", domain: "srv1" }],
    ["a uri with spaces", { uri: "qemu:///system now", domain: "srv1" }],
    ["an unknown field", { uri: "qemu:///system", domain: "srv1", password: "x" }],
    ["a number for a domain", { uri: "qemu:///system", domain: 1 }],
    ["null", null],
  ])("refuses %s with POWER_BAD_PARAMS", (_, params) => {
    const r = d.validate(params);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe("POWER_BAD_PARAMS");
      expect(r.error.details["driver"]).toBe("libvirt");
    }
  });

  it("refuses bad parameters in an action before connecting", async () => {
    expect(await codeOf(d.on({ uri: "qemu:///system" }))).toBe("POWER_BAD_PARAMS");
  });
});

describe("libvirt error messages", () => {
  it.each([
    ["Domain not found: no domain with matching name 'srv9'", "POWER_TARGET_NOT_FOUND"],
    [
      "Domain not found: no domain with matching uuid 'cec9367f-16dd-4a2e-a4b9-acb9d82cd693' (srv1)",
      "POWER_TARGET_NOT_FOUND",
    ],
    ["Failed to connect socket to '/tmp/x/libvirt-sock': No such file or directory", "POWER_UNREACHABLE"],
    ["Cannot recv data: Connection reset by peer", "POWER_UNREACHABLE"],
    ["End of file while reading data: Input/output error", "POWER_UNREACHABLE"],
    ["internal error: qemu unexpectedly closed the monitor", "POWER_ACTION_FAILED"],
  ])("classifies %j as %s", (message, code) => {
    expect(classifyLibvirtMessage(message)).toBe(code);
  });

  it.each([
    [DomainState.RUNNING, "on"],
    [DomainState.PAUSED, "on"],
    [DomainState.SHUTOFF, "off"],
    [DomainState.CRASHED, "off"],
    [DomainState.NOSTATE, "unknown"],
  ] as const)("reports libvirt state %s as %s", (state, power) => {
    expect(powerStateOf(state)).toBe(power);
  });
});

describe("libvirt power actions", () => {
  it("starts a stopped domain and leaves a running one alone", async () => {
    const lv = fakeLibvirt(DomainState.SHUTOFF);
    const d = new LibvirtPowerDriver({ connect: lv.connect });
    await d.on({ uri: URI, domain: "srv1" });
    await d.on({ uri: URI, domain: "srv1" });
    expect(lv.log.filter((l) => l === "start")).toHaveLength(1);
    expect(await d.status({ uri: URI, domain: "srv1" })).toBe("on");
    expect(lv.log.filter((l) => l === "close")).toHaveLength(
      lv.log.filter((l) => l.startsWith("open")).length,
    );
  });

  it("treats off on a stopped domain as success, and cycle of a stopped domain as on", async () => {
    const lv = fakeLibvirt(DomainState.SHUTOFF);
    const d = new LibvirtPowerDriver({ connect: lv.connect });
    await d.off({ uri: URI, domain: "srv1" });
    await d.cycle({ uri: URI, domain: "srv1" });
    expect(lv.state()).toBe(DomainState.RUNNING);
    await d.cycle({ uri: URI, domain: "srv1" });
    expect(lv.log.filter((l) => !l.startsWith("open") && l !== "close")).toEqual([
      "destroy",
      "destroy",
      "start",
      "destroy",
      "start",
    ]);
  });

  it("reports an unknown domain as POWER_TARGET_NOT_FOUND", async () => {
    const d = new LibvirtPowerDriver({ connect: fakeLibvirt(DomainState.SHUTOFF).connect });
    expect(await codeOf(d.status({ uri: URI, domain: "srv9" }))).toBe("POWER_TARGET_NOT_FOUND");
  });

  it("reports a missing daemon as POWER_UNREACHABLE", async () => {
    const d = new LibvirtPowerDriver({
      connect: () =>
        Promise.reject(new Error("Failed to connect socket to '/nowhere': No such file or directory")),
    });
    expect(await codeOf(d.on({ uri: URI, domain: "srv1" }))).toBe("POWER_UNREACHABLE");
  });

  it("gives up on a daemon that does not answer", async () => {
    const d = new LibvirtPowerDriver({ connect: () => new Promise(() => undefined), timeoutMs: 20 });
    expect(await codeOf(d.status({ uri: URI, domain: "srv1" }))).toBe("POWER_UNREACHABLE");
  });
});
