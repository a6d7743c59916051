// qemu-img info parsing and the checks a base and an overlay must pass, on images made with
// the real qemu-img (a hostile qcow2 names /etc/passwd as its backing file).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkBaseInfo, checkOverlayInfo, parseQemuImgInfo } from "../src/guests/qemu-img.js";

let dir: string;
const qemuImg = (...args: string[]) => execFileSync("qemu-img", args, { encoding: "utf8" });
const info = (file: string) => parseQemuImgInfo(qemuImg("info", "-f", "qcow2", "--output=json", file), file);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-qemu-img-"));
  fs.mkdirSync(path.join(dir, "cache"));
  qemuImg("create", "-q", "-f", "qcow2", path.join(dir, "cache/base.qcow2"), "64M");
  qemuImg(
    "create",
    "-q",
    "-f",
    "qcow2",
    "-b",
    "/etc/passwd",
    "-F",
    "raw",
    path.join(dir, "evil.qcow2"),
    "1G",
  );
  qemuImg(
    "create",
    "-q",
    "-f",
    "qcow2",
    "-b",
    path.join(dir, "cache/base.qcow2"),
    "-F",
    "qcow2",
    path.join(dir, "overlay.qcow2"),
    "1G",
  );
  qemuImg("create", "-q", "-f", "raw", path.join(dir, "raw.img"), "1M");
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("base images", () => {
  it("accepts a standalone qcow2", () => {
    const i = info(path.join(dir, "cache/base.qcow2"));
    expect(i["virtual-size"]).toBe(64 * 2 ** 20);
    expect(() => checkBaseInfo(i, "base.qcow2")).not.toThrow();
  });

  it("refuses a hostile qcow2 that names a host file as its backing file", () => {
    const i = info(path.join(dir, "evil.qcow2"));
    expect(i["backing-filename"]).toBe("/etc/passwd");
    expect(() => checkBaseInfo(i, "evil.qcow2")).toThrow(/names a backing file \(\/etc\/passwd\)/);
    expect(() =>
      checkOverlayInfo(
        i,
        path.join(dir, "evil.qcow2"),
        path.join(dir, "cache/base.qcow2"),
        path.join(dir, "cache"),
      ),
    ).toThrow(/backed by \/etc\/passwd/);
  });

  it("refuses an external data file", () => {
    const json = fs.readFileSync(
      new URL("./fixtures/guests/qemu-img-data-file.json", import.meta.url),
      "utf8",
    );
    expect(() => checkBaseInfo(parseQemuImgInfo(json, "d"), "d")).toThrow(
      /external data file \(\/dev\/sda\)/,
    );
  });

  it("refuses another format and unreadable output", () => {
    const raw = parseQemuImgInfo(
      qemuImg("info", "-f", "raw", "--output=json", path.join(dir, "raw.img")),
      "raw.img",
    );
    expect(() => checkBaseInfo(raw, "raw.img")).toThrow(/is raw, expected qcow2/);
    expect(() => parseQemuImgInfo("not json", "x")).toThrow(/did not print JSON/);
    expect(() => parseQemuImgInfo('{"format": 3}', "x")).toThrow(/qemu-img info on x/);
  });

  it("cannot be fooled into probing: -f qcow2 on a raw file fails", () => {
    expect(() => qemuImg("info", "-f", "qcow2", "--output=json", path.join(dir, "raw.img"))).toThrow();
  });
});

describe("overlays", () => {
  it("accepts an overlay on the expected base in the cache", () => {
    const base = path.join(dir, "cache/base.qcow2");
    const i = info(path.join(dir, "overlay.qcow2"));
    expect(() =>
      checkOverlayInfo(i, path.join(dir, "overlay.qcow2"), base, path.join(dir, "cache")),
    ).not.toThrow();
  });

  it("refuses an overlay on another base or a base outside the cache", () => {
    const i = info(path.join(dir, "overlay.qcow2"));
    const f = path.join(dir, "overlay.qcow2");
    expect(() =>
      checkOverlayInfo(i, f, path.join(dir, "cache/other.qcow2"), path.join(dir, "cache")),
    ).toThrow(/expected/);
    expect(() =>
      checkOverlayInfo(i, f, path.join(dir, "cache/base.qcow2"), path.join(dir, "elsewhere")),
    ).toThrow(/expected/);
  });
});
