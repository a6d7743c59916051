import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExec } from "../src/exec.js";
import { silentLogger } from "../src/log.js";
import { checkImageFile, checkImageInfo, parseQemuImgInfo } from "../src/qcow2.js";
import { stubRunner } from "./helpers/exec.js";
import { cleanup, tempDir } from "./helpers/tmp.js";

const info = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    "virtual-size": 1073741824,
    filename: "/var/lib/weft/images/guest.qcow2",
    "cluster-size": 65536,
    format: "qcow2",
    "actual-size": 200704,
    "format-specific": { type: "qcow2", data: { compat: "1.1", "lazy-refcounts": false, corrupt: false } },
    "dirty-flag": false,
    ...extra,
  });

describe("qcow2 check", () => {
  it("accepts a self-contained qcow2", async () => {
    const stub = stubRunner().stub("qemu-img info --output=json /img/guest.qcow2", { stdout: info() });
    await expect(checkImageFile(createExec(silentLogger, stub.runner), "/img/guest.qcow2")).resolves.toEqual({
      format: "qcow2",
      virtualSize: 1073741824,
    });
  });

  it.each([
    [
      "a backing file",
      info({ "backing-filename": "/etc/shadow", "full-backing-filename": "/etc/shadow" }),
      "IMAGE_HAS_BACKING_FILE",
    ],
    [
      "an external data file",
      info({ "format-specific": { type: "qcow2", data: { "data-file": "/dev/sda" } } }),
      "IMAGE_HAS_DATA_FILE",
    ],
    ["another format", info({ format: "raw" }), "IMAGE_FORMAT_MISMATCH"],
  ])("refuses %s", (_what, stdout, code) => {
    expect(() => checkImageInfo(parseQemuImgInfo(stdout), "qcow2")).toThrow(
      expect.objectContaining({ code, type: "integrity" }),
    );
  });

  it("refuses output that is not the expected JSON", () => {
    expect(() => parseQemuImgInfo("qemu-img: Could not open")).toThrow(
      expect.objectContaining({ code: "QEMU_IMG_OUTPUT_INVALID" }),
    );
    expect(() => parseQemuImgInfo('{"format":1}')).toThrow(
      expect.objectContaining({ code: "QEMU_IMG_OUTPUT_INVALID" }),
    );
  });
});

// Real sockets, files and processes: generous timeouts for a loaded CI machine.
describe("qcow2 check with the real qemu-img", { timeout: 30_000 }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir();
  });
  afterAll(() => cleanup(dir));

  it("catches a real overlay that names a backing file", async () => {
    const exec = createExec(silentLogger);
    const base = join(dir, "base.qcow2");
    const overlay = join(dir, "overlay.qcow2");
    await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", base, "16M"]);
    await exec.run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay]);
    await expect(checkImageFile(exec, base)).resolves.toEqual({ format: "qcow2", virtualSize: 16 << 20 });
    await expect(checkImageFile(exec, overlay)).rejects.toMatchObject({ code: "IMAGE_HAS_BACKING_FILE" });
  });
});
