import { describe, expect, it } from "vitest";
import { PowerDriverRegistry, PowerError, isPowerError, type PowerErrorCode } from "../src/power/driver.js";
import { FakePowerDriver } from "../src/power/fake.js";

async function codeOf(p: Promise<unknown>): Promise<PowerErrorCode | "none"> {
  try {
    await p;
    return "none";
  } catch (err) {
    if (err instanceof PowerError) return err.code;
    throw err;
  }
}

describe("fake power driver", () => {
  it("turns a machine on, off and on again through cycle", async () => {
    const d = new FakePowerDriver().addMachine("m1");
    expect(await d.status({ id: "m1" })).toBe("off");
    await d.on({ id: "m1" });
    expect(await d.status({ id: "m1" })).toBe("on");
    await d.off({ id: "m1" });
    expect(d.peek("m1")).toBe("off");
    await d.cycle({ id: "m1" });
    expect(d.peek("m1")).toBe("on");
    expect(d.calls.map((c) => c.action)).toEqual(["status", "on", "status", "off", "cycle"]);
  });

  it("treats on when on and off when off as success", async () => {
    const d = new FakePowerDriver().addMachine("m1", "on");
    await d.on({ id: "m1" });
    await d.off({ id: "m1" });
    await d.off({ id: "m1" });
    expect(d.peek("m1")).toBe("off");
  });

  it.each([
    [
      "a machine the endpoint does not know",
      (d: FakePowerDriver) => d,
      { id: "ghost" },
      "POWER_TARGET_NOT_FOUND",
    ],
    [
      "an unreachable endpoint",
      (d: FakePowerDriver) => d.setReachable(false),
      { id: "m1" },
      "POWER_UNREACHABLE",
    ],
    [
      "an injected failure",
      (d: FakePowerDriver) => d.failNext("bmc said no"),
      { id: "m1" },
      "POWER_ACTION_FAILED",
    ],
    ["parameters of the wrong shape", (d: FakePowerDriver) => d, { name: "m1" }, "POWER_BAD_PARAMS"],
    ["no parameters", (d: FakePowerDriver) => d, undefined, "POWER_BAD_PARAMS"],
  ] as const)("fails with a stable code for %s", async (_, arrange, params, code) => {
    const d = arrange(new FakePowerDriver().addMachine("m1"));
    expect(await codeOf(d.on(params))).toBe(code);
    expect(d.peek("m1")).toBe("off");
  });

  it("does not record a call for bad parameters", async () => {
    const d = new FakePowerDriver().addMachine("m1");
    await codeOf(d.on({ id: "" }));
    expect(d.calls).toEqual([]);
  });

  it("forgets an injected failure after one use", async () => {
    const d = new FakePowerDriver().addMachine("m1").failNext("once");
    expect(await codeOf(d.on({ id: "m1" }))).toBe("POWER_ACTION_FAILED");
    expect(await codeOf(d.on({ id: "m1" }))).toBe("none");
  });
});

describe("power errors", () => {
  it("carry a code, an HTTP status, details and a cause", () => {
    const cause = new Error("socket closed");
    const e = new PowerError("POWER_UNREACHABLE", "no answer", { cause, details: { uri: "x" } });
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe("POWER_UNREACHABLE");
    expect(e.httpStatus).toBe(503);
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ uri: "x" });
    expect(isPowerError(e, "POWER_UNREACHABLE")).toBe(true);
    expect(isPowerError(e, "POWER_BAD_PARAMS")).toBe(false);
    expect(isPowerError(new Error("x"))).toBe(false);
  });
});

describe("power driver registry", () => {
  it("finds drivers by name and lists them", () => {
    const fake = new FakePowerDriver();
    const other = new FakePowerDriver("other");
    const reg = new PowerDriverRegistry([other, fake]);
    expect(reg.get("fake")).toBe(fake);
    expect(reg.names()).toEqual(["fake", "other"]);
    expect(reg.has("redfish")).toBe(false);
  });

  it("refuses an unknown driver with POWER_UNKNOWN_DRIVER", () => {
    const reg = new PowerDriverRegistry([new FakePowerDriver()]);
    expect(() => reg.get("ipmi")).toThrowError(expect.objectContaining({ code: "POWER_UNKNOWN_DRIVER" }));
    const v = reg.validate("ipmi", {});
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.error.code).toBe("POWER_UNKNOWN_DRIVER");
  });

  it("refuses to register two drivers under one name", () => {
    const reg = new PowerDriverRegistry([new FakePowerDriver()]);
    expect(() => reg.register(new FakePowerDriver())).toThrow(/already registered/);
  });

  it("validates parameters through the named driver without side effects", () => {
    const fake = new FakePowerDriver().addMachine("m1");
    const reg = new PowerDriverRegistry([fake]);
    expect(reg.validate("fake", { id: "m1" })).toEqual({ ok: true, params: { id: "m1" } });
    const bad = reg.validate("fake", { id: 7 });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.code).toBe("POWER_BAD_PARAMS");
    expect(fake.calls).toEqual([]);
  });
});

describe("default power drivers", () => {
  it("register libvirt and not the fake", async () => {
    const { defaultPowerDrivers } = await import("../src/power/index.js");
    const reg = defaultPowerDrivers();
    expect(reg.names()).toEqual(["libvirt"]);
    expect(reg.validate("libvirt", { uri: "qemu:///system", domain: "srv1" }).ok).toBe(true);
  });
});
