// Guest specs: human units, defaults of the small instance, refusals, CPU quota.
import { describe, expect, it } from "vitest";
import { WeftError } from "../src/errors.js";
import { cpuQuota, DEFAULT_SPEC, memoryHardLimitMiB, normalizeSpec } from "../src/guests/spec.js";

describe("normalizeSpec", () => {
  it("fills in the small instance when only the image is given", () => {
    expect(normalizeSpec({ image: "guest-base" })).toEqual({
      image: "guest-base",
      vcpus: 1,
      cpuMhz: 1600,
      memoryMiB: 1741,
      diskBytes: 250_000_000_000,
      diskIops: null,
      diskBps: null,
      netInKBps: 12_500,
      netOutKBps: 12_500,
      ports: [{ port: 80, protocol: "tcp" }],
    });
  });

  it.each([
    [{ cpu: "1.6GHz" }, { cpuMhz: 1600 }],
    [{ cpu: "2400 MHz" }, { cpuMhz: 2400 }],
    [{ cpu: 800 }, { cpuMhz: 800 }],
    [{ memory: "1.7GiB" }, { memoryMiB: 1741 }],
    [{ memory: "512MiB" }, { memoryMiB: 512 }],
    [{ memory: "1G" }, { memoryMiB: 954 }],
    [{ memory: 2048 }, { memoryMiB: 2048 }],
    [{ net: "100Mbit" }, { netInKBps: 12_500, netOutKBps: 12_500 }],
    [
      { net: "1Gbit", netOut: "10Mbit" },
      { netInKBps: 125_000, netOutKBps: 1250 },
    ],
    [{ net: "8MB/s" }, { netInKBps: 8000 }],
    [{ disk: "250GB" }, { diskBytes: 250_000_000_000 }],
    [{ disk: "10GiB" }, { diskBytes: 10 * 2 ** 30 }],
    [
      { diskIops: 500, diskBps: "50MB/s" },
      { diskIops: 500, diskBps: 50_000_000 },
    ],
    [{ diskIops: "2k" }, { diskIops: 2000 }],
    [{ vcpus: 4 }, { vcpus: 4 }],
  ])("parses %j", (input, expected) => {
    expect(normalizeSpec({ image: "i", ...input })).toMatchObject(expected);
  });

  it.each([
    [{ cpu: "-1GHz" }, /not a quantity/],
    [{ cpu: "1.6 parsecs" }, /unknown unit/],
    [{ cpu: "50MHz" }, /outside/],
    [{ cpu: "20GHz" }, /outside/],
    [{ memory: "16MiB" }, /outside/],
    [{ memory: "5TiB" }, /outside/],
    [{ memory: -5 }, /positive/],
    [{ vcpus: 0 }, /positive/],
    [{ vcpus: 1.5 }, /whole number/],
    [{ vcpus: 1000 }, /outside/],
    [{ disk: "100MB" }, /outside/],
    [{ disk: "1PB" }, /unknown unit/],
    [{ net: "10kbit" }, /outside/],
    [{ net: "1Tbit" }, /unknown unit/],
    [{ diskIops: 1 }, /outside/],
    [{ cpu: Number.NaN }, /invalid guest spec/],
  ])("refuses %j", (input, message) => {
    let err: unknown;
    try {
      normalizeSpec({ image: "i", ...input });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).status).toBe(400);
    expect((err as Error).message).toMatch(message);
  });

  it("refuses unknown fields, bad image names and duplicate ports", () => {
    expect(() => normalizeSpec({ image: "i", colour: "red" } as never)).toThrow(/invalid guest spec/);
    expect(() => normalizeSpec({ image: "../etc" })).toThrow(/invalid guest spec/);
    expect(() => normalizeSpec({ image: "i", ports: [{ port: 80 }, { port: 80, protocol: "tcp" }] })).toThrow(
      /listed twice/,
    );
  });
});

describe("cpuQuota", () => {
  it.each([
    [1600, 2400, 66_666],
    [2400, 2400, 100_000],
    [3000, 2400, 100_000],
    [1200, 2400, 50_000],
    [10, 2400, 1_000],
  ])("%d MHz on a %d MHz core is quota %d per vCPU", (mhz, core, quota) => {
    expect(cpuQuota(mhz, core)).toEqual({ period: 100_000, quota });
  });

  it("refuses a host with no clock", () => {
    expect(() => cpuQuota(1600, 0)).toThrow(/no CPU clock/);
  });
});

describe("memoryHardLimitMiB", () => {
  it("adds QEMU's overhead, and the TCG translation cache without KVM", () => {
    expect(memoryHardLimitMiB(DEFAULT_SPEC.memoryMiB, true)).toBe(1741 + 256);
    expect(memoryHardLimitMiB(DEFAULT_SPEC.memoryMiB, false)).toBe(1741 + 256 + 128);
  });
});
