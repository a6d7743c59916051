import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { LabError } from "../src/errors.js";
import { isRunning, readProc, recordProcess } from "../src/procs.js";
import { acquireLock, readState, writeState, type LabState } from "../src/state.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-state-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sample = (): LabState => ({
  version: 1,
  netns: "weft-lab",
  bridge: "weftbr0",
  phase: "building",
  createdAt: "2026-11-25T20:00:00.000Z",
  updatedAt: "2026-11-25T20:00:00.000Z",
  servers: [{ name: "srv1", mac: "52:54:00:77:00:01" }],
  memoryMiB: 512,
  vcpus: 1,
  diskGiB: 8,
  firmware: "bios",
  processes: { libvirtd: { pid: 4242, startTime: "123", cmd: "libvirtd" } },
});

describe("lab state file", () => {
  it("reads back what was written", () => {
    const file = path.join(dir, "lab.json");
    writeState(file, sample());
    expect(readState(file)).toEqual(sample());
  });

  it("reports no lab when the file does not exist", () => {
    expect(readState(path.join(dir, "lab.json"))).toBeUndefined();
  });

  it.each([
    ["not JSON", "{"],
    ["a wrong version", JSON.stringify({ ...sample(), version: 2 })],
    ["an unknown field", JSON.stringify({ ...sample(), extra: true })],
    [
      "a bad process record",
      JSON.stringify({ ...sample(), processes: { ra: { pid: -1, startTime: "1", cmd: "x" } } }),
    ],
  ])("refuses a file with %s as LAB_STATE_CORRUPT", (_, text) => {
    const file = path.join(dir, "lab.json");
    writeFileSync(file, text);
    expect(() => readState(file)).toThrowError(expect.objectContaining({ code: "LAB_STATE_CORRUPT" }));
  });

  it("replaces the file atomically, leaving no temporary file", () => {
    const file = path.join(dir, "lab.json");
    writeState(file, sample());
    writeState(file, { ...sample(), phase: "up" });
    expect(readState(file)?.phase).toBe("up");
    expect(JSON.parse(readFileSync(file, "utf8")).phase).toBe("up");
    expect(readdir()).toEqual(["lab.json"]);
  });
});

function readdir(): string[] {
  return readdirSync(dir).sort();
}

describe("lab lock", () => {
  it("lets one command in at a time", () => {
    const file = path.join(dir, "lab.lock");
    const release = acquireLock(file);
    expect(() => acquireLock(file)).toThrowError(expect.objectContaining({ code: "LAB_BUSY" }));
    release();
    acquireLock(file)();
  });

  it("takes over a lock whose holder is gone", () => {
    const file = path.join(dir, "lab.lock");
    writeFileSync(file, JSON.stringify({ pid: 999_999_999, startTime: "1", cmd: "weft-lab" }));
    const release = acquireLock(file);
    release();
  });

  it("takes over a lock file that cannot be read", () => {
    const file = path.join(dir, "lab.lock");
    writeFileSync(file, "garbage");
    acquireLock(file)();
  });
});

describe("process records", () => {
  it("recognise a live process by PID and start time", () => {
    const me = recordProcess(process.pid, "vitest");
    expect(me).toBeDefined();
    if (me === undefined) return;
    expect(isRunning(me)).toBe(true);
    expect(isRunning({ ...me, startTime: "1" })).toBe(false);
    expect(readProc(process.pid)?.argv[0]).toContain("node");
  });

  it("treat a PID that does not exist as not running", () => {
    expect(isRunning({ pid: 999_999_999, startTime: "1", cmd: "x" })).toBe(false);
    expect(recordProcess(999_999_999, "x")).toBeUndefined();
  });

  it("treat a zombie as not running", () => {
    const proc = path.join(dir, "proc");
    mkdirSync(path.join(proc, "77"), { recursive: true });
    // comm with spaces and a parenthesis must not shift the fields
    const fields = ["Z", ...Array.from({ length: 18 }, () => "0"), "5555"];
    writeFileSync(path.join(proc, "77", "stat"), `77 (weird ) name) ${fields.join(" ")} 0 0`);
    writeFileSync(path.join(proc, "77", "cmdline"), "");
    expect(readProc(77, proc)).toEqual({ state: "Z", startTime: "5555", argv: [] });
    expect(isRunning({ pid: 77, startTime: "5555", cmd: "x" }, proc)).toBe(false);
  });
});

describe("lab errors", () => {
  it("carry a code and a hint", () => {
    const e = new LabError("LAB_MISSING_TOOL", "missing virsh", { hint: "apt-get install libvirt-clients" });
    expect(e.code).toBe("LAB_MISSING_TOOL");
    expect(e.hint).toContain("libvirt-clients");
  });
});
