import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chooseAccel, findStockKernel, qemuKvmProbe, type AccelProbe } from "../src/accel.js";
import type { RunResult, Runner } from "../src/exec.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-accel-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function countingProbe(result: { ok: boolean; detail: string }): AccelProbe & { calls: number } {
  const p = Object.assign(
    async () => {
      p.calls++;
      return result;
    },
    { calls: 0 },
  );
  return p;
}

const now = () => new Date("2026-11-25T20:00:00Z");

describe("accelerator choice", () => {
  it("picks TCG when a stock guest does not run on KVM", async () => {
    const probe = countingProbe({ ok: false, detail: "printed nothing within 15000 ms" });
    const d = await chooseAccel({
      request: "auto",
      cacheFile: path.join(dir, "accel.json"),
      kvmDevice: () => true,
      probe,
      now,
    });
    expect(d.accel).toBe("tcg");
    expect(d.reason).toContain("printed nothing");
    expect(probe.calls).toBe(1);
  });

  it("picks KVM when the stock guest runs", async () => {
    const d = await chooseAccel({
      request: "auto",
      cacheFile: undefined,
      kvmDevice: () => true,
      probe: countingProbe({ ok: true, detail: "banner" }),
      now,
    });
    expect(d.accel).toBe("kvm");
  });

  it("picks TCG without probing when /dev/kvm cannot be used", async () => {
    const probe = countingProbe({ ok: true, detail: "" });
    const d = await chooseAccel({
      request: "auto",
      cacheFile: undefined,
      kvmDevice: () => false,
      probe,
      now,
    });
    expect(d).toEqual({ accel: "tcg", reason: "no usable /dev/kvm", decidedAt: "2026-11-25T20:00:00.000Z" });
    expect(probe.calls).toBe(0);
  });

  it("caches the decision and probes only once", async () => {
    const cacheFile = path.join(dir, "accel.json");
    const probe = countingProbe({ ok: false, detail: "x" });
    const first = await chooseAccel({ request: "auto", cacheFile, kvmDevice: () => true, probe, now });
    const second = await chooseAccel({ request: "auto", cacheFile, kvmDevice: () => true, probe, now });
    expect(second).toEqual(first);
    expect(probe.calls).toBe(1);
    expect(JSON.parse(readFileSync(cacheFile, "utf8"))).toMatchObject({ accel: "tcg" });
  });

  it("probes again when the cache is unreadable", async () => {
    const cacheFile = path.join(dir, "accel.json");
    writeFileSync(cacheFile, "{ not json");
    const probe = countingProbe({ ok: true, detail: "banner" });
    expect((await chooseAccel({ request: "auto", cacheFile, kvmDevice: () => true, probe, now })).accel).toBe(
      "kvm",
    );
    expect(probe.calls).toBe(1);
  });

  it.each(["kvm", "tcg"] as const)("obeys --accel %s without probing or caching", async (request) => {
    const cacheFile = path.join(dir, "accel.json");
    const probe = countingProbe({ ok: request !== "kvm", detail: "" });
    const d = await chooseAccel({ request, cacheFile, kvmDevice: () => false, probe, now });
    expect(d.accel).toBe(request);
    expect(probe.calls).toBe(0);
    expect(() => readFileSync(cacheFile)).toThrow();
  });
});

function result(partial: Partial<RunResult>): RunResult {
  return {
    stdout: "",
    stderr: "",
    exitCode: 0,
    signal: undefined,
    timedOut: false,
    failed: false,
    ...partial,
  };
}

describe("the QEMU KVM probe", () => {
  const runs: Array<{ cmd: string; args: readonly string[] }> = [];
  const runner =
    (r: RunResult): Runner =>
    async (cmd, args) => {
      runs.push({ cmd, args });
      return r;
    };

  it("passes when the kernel prints its banner", async () => {
    const probe = qemuKvmProbe(
      runner(result({ stdout: "[    0.000000] Linux version 6.1.0-56-amd64\n", exitCode: 0 })),
      { kernel: "/boot/vmlinuz-x" },
    );
    expect(await probe()).toMatchObject({ ok: true });
    const args = runs.at(-1)?.args ?? [];
    expect(args).toEqual(
      expect.arrayContaining(["-accel", "kvm", "-kernel", "/boot/vmlinuz-x", "-no-reboot"]),
    );
  });

  it("fails when the kernel stays silent until the timeout", async () => {
    const probe = qemuKvmProbe(
      runner(result({ timedOut: true, failed: true, exitCode: undefined, signal: "SIGTERM" })),
      {
        kernel: "/boot/vmlinuz-x",
        timeoutMs: 50,
      },
    );
    expect(await probe()).toEqual({ ok: false, detail: "/boot/vmlinuz-x printed nothing within 50 ms" });
  });

  it("fails with QEMU's reason when it aborts", async () => {
    const probe = qemuKvmProbe(
      runner(
        result({
          failed: true,
          exitCode: undefined,
          signal: "SIGABRT",
          stderr: "qemu: error: failed to set MSR 0x10a to 0x69\n",
        }),
      ),
      { kernel: "/boot/vmlinuz-x" },
    );
    expect(await probe()).toEqual({
      ok: false,
      detail: "QEMU exited (SIGABRT): failed to set MSR 0x10a to 0x69",
    });
  });

  it("finds the newest kernel in a boot directory", () => {
    for (const n of ["vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-amd64", "initrd.img-6.1.0-56-amd64"])
      writeFileSync(path.join(dir, n), "");
    expect(findStockKernel(dir)).toBe(path.join(dir, "vmlinuz-6.1.0-56-amd64"));
    expect(findStockKernel(path.join(dir, "none"))).toBeUndefined();
  });
});
