// The local host driver's file side without libvirt: base image cache (one download for
// concurrent requests, sha256 and size checked, hostile qcow2 refused), overlays, config
// drive contents; the HTTP image source; volume XML parsing for the remote driver.
import crypto from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExec } from "../src/guests/exec.js";
import {
  buildConfigDrive,
  DEFAULT_GUEST_NETWORK,
  HttpImageSource,
  LocalHostDriver,
  type BaseImageRef,
  type ImageSource,
} from "../src/guests/host-driver.js";
import { parseVolumeXml } from "../src/guests/remote-driver.js";
import { createLogger } from "../src/log.js";

const log = createLogger("silent");
const exec = createExec(log);
let dir: string;
let base: Buffer;
let ref: BaseImageRef;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-hostdrv-"));
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", path.join(dir, "base.qcow2"), "16M"]);
  execFileSync("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    "-b",
    "/etc/passwd",
    "-F",
    "raw",
    path.join(dir, "evil.qcow2"),
    "16M",
  ]);
  base = fs.readFileSync(path.join(dir, "base.qcow2"));
  ref = {
    name: "guest-base",
    sha256: crypto.createHash("sha256").update(base).digest("hex"),
    size: base.length,
  };
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function driver(name: string, images: ImageSource) {
  return new LocalHostDriver({
    stateDir: path.join(dir, name),
    libvirtUri: "test:///default", // never opened by these tests
    network: DEFAULT_GUEST_NETWORK,
    images,
    exec,
    log,
  });
}

const counting = (bytes: Buffer) => {
  const src = {
    opens: 0,
    open: async () => (src.opens++, Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)])),
  };
  return src;
};

describe("LocalHostDriver image cache", () => {
  it("downloads a base once for concurrent requests, verified, read-only", async () => {
    const src = counting(base);
    const d = driver("a", src);
    const paths = await Promise.all([d.ensureBaseImage(ref), d.ensureBaseImage(ref), d.ensureBaseImage(ref)]);
    expect(new Set(paths).size).toBe(1);
    expect(src.opens).toBe(1);
    expect(fs.statSync(paths[0]!).mode & 0o777).toBe(0o444);
    await d.ensureBaseImage(ref);
    expect(src.opens).toBe(1);
  });

  it("refuses a download whose sha256 or size differs, leaving nothing", async () => {
    const d = driver("b", counting(base));
    await expect(d.ensureBaseImage({ ...ref, sha256: "0".repeat(64) })).rejects.toMatchObject({
      code: "IMAGE_CHECKSUM_MISMATCH",
    });
    await expect(d.ensureBaseImage({ ...ref, size: ref.size + 1 })).rejects.toMatchObject({
      code: "IMAGE_SIZE_MISMATCH",
    });
    expect(fs.readdirSync(path.join(dir, "b", "images"))).toEqual([]);
    await expect(d.ensureBaseImage({ ...ref, sha256: "../../etc/x" })).rejects.toMatchObject({
      code: "IMAGE_SHA256_INVALID",
    });
  });

  it("refuses a hostile qcow2 even with a matching checksum", async () => {
    const evil = fs.readFileSync(path.join(dir, "evil.qcow2"));
    const evilRef = {
      name: "evil",
      sha256: crypto.createHash("sha256").update(evil).digest("hex"),
      size: evil.length,
    };
    const d = driver("c", counting(evil));
    await expect(d.ensureBaseImage(evilRef)).rejects.toThrow(/names a backing file \(\/etc\/passwd\)/);
    expect(fs.readdirSync(path.join(dir, "c", "images"))).toEqual([]);
  });

  it("makes a thin overlay on the base and refuses bad guest names", async () => {
    const d = driver("a", counting(base));
    const overlay = await d.createOverlay("web-1", ref, 10 * 2 ** 30);
    const info = JSON.parse(
      execFileSync("qemu-img", ["info", "-f", "qcow2", "--output=json", overlay], { encoding: "utf8" }),
    );
    expect(info["virtual-size"]).toBe(10 * 2 ** 30);
    expect(info["backing-filename"]).toBe(path.join(dir, "a", "images", `${ref.sha256}.qcow2`));
    expect(() => d.paths("../../etc/passwd")).toThrow(/bad guest name/);
    await expect(d.removeBase(ref)).rejects.toMatchObject({ code: "IMAGE_IN_USE" });
  });
});

describe("config drive", () => {
  it("is an ISO labelled cidata with weft.json and NoCloud files", async () => {
    const iso = path.join(dir, "cd.iso");
    await buildConfigDrive(
      exec,
      { name: "web-1", dip: "10.78.0.2", prefix: 16, gateway: "10.78.0.1", role: "web", vip: "10.79.0.1" },
      iso,
    );
    expect(execFileSync("isoinfo", ["-d", "-i", iso], { encoding: "utf8" })).toMatch(/Volume id: cidata/);
    const weft = JSON.parse(
      execFileSync("isoinfo", ["-J", "-i", iso, "-x", "/weft.json"], { encoding: "utf8" }),
    );
    expect(weft).toEqual({
      name: "web-1",
      dip: "10.78.0.2",
      prefix: 16,
      gateway: "10.78.0.1",
      role: "web",
      vip: "10.79.0.1",
    });
    expect(
      execFileSync("isoinfo", ["-J", "-i", iso, "-x", "/network-config"], { encoding: "utf8" }),
    ).toContain("addresses: [10.78.0.2/16]");
  });
});

describe("HttpImageSource", () => {
  it("fetches /boot/images/<name> from the controller", async () => {
    const urls: string[] = [];
    const fake = (async (u: URL) => {
      urls.push(String(u));
      return new Response(new Uint8Array([1, 2, 3]));
    }) as unknown as typeof fetch;
    const src = new HttpImageSource("http://controller.invalid:8080", fake);
    const chunks: Buffer[] = [];
    for await (const c of await src.open({ name: "guest base", sha256: "", size: 3 }))
      chunks.push(c as Buffer);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from([1, 2, 3]));
    expect(urls).toEqual(["http://controller.invalid:8080/boot/images/guest%20base"]);
  });

  it("reports a refused download", async () => {
    const fake = (async () =>
      new Response("no", { status: 404, statusText: "Not Found" })) as unknown as typeof fetch;
    await expect(new HttpImageSource("http://c.invalid", fake).open(ref)).rejects.toMatchObject({
      code: "IMAGE_DOWNLOAD_FAILED",
    });
  });
});

describe("parseVolumeXml", () => {
  it("reads path, format, capacity and backing store", () => {
    const xml = `<volume type='file'>
  <name>web-1.qcow2</name>
  <capacity unit='bytes'>2147483648</capacity>
  <target>
    <path>/var/lib/weft/guests/guests/web-1.qcow2</path>
    <format type='qcow2'/>
  </target>
  <backingStore>
    <path>/etc/passwd</path>
    <format type='raw'/>
  </backingStore>
</volume>`;
    expect(parseVolumeXml(xml)).toEqual({
      path: "/var/lib/weft/guests/guests/web-1.qcow2",
      format: "qcow2",
      capacity: 2147483648,
      backingPath: "/etc/passwd",
      backingFormat: "raw",
    });
    expect(parseVolumeXml("<volume><target><path>/a&amp;b</path></target></volume>")).toMatchObject({
      path: "/a&b",
      format: null,
      backingPath: null,
    });
  });
});
