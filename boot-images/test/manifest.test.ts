import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { checkCached } from "../src/core/cache.js";
import { ImageError } from "../src/core/errors.js";
import { sha256Text } from "../src/core/hash.js";
import {
  MANIFEST_SCHEMA,
  manifestFileName,
  parseManifest,
  readManifestsIn,
  serializeManifest,
  type ImageManifest,
} from "../src/core/manifest.js";

const CONTENT = "pretend kernel";
const KEY = "1".repeat(64);

const manifest = (over: Partial<Record<keyof ImageManifest, unknown>> = {}): ImageManifest =>
  ({
    schema: MANIFEST_SCHEMA,
    name: "maintenance-kernel",
    kind: "kernel",
    format: "bzImage",
    file: "maintenance-kernel.vmlinuz",
    size: CONTENT.length,
    sha256: sha256Text(CONTENT),
    recipe: "maintenance",
    inputKey: KEY,
    builtAt: "2026-11-25T00:00:00.000Z",
    buildSeconds: 1.5,
    packages: { "linux-image-6.1.0-56-amd64": "6.1.192-2" },
    inputs: { "agent-bundle": "2".repeat(64) },
    details: { kernelRelease: "6.1.0-56-amd64", uncompressedSize: 3, ok: true },
    ...over,
  }) as ImageManifest;

describe("manifest validation", () => {
  it("accepts a complete manifest and round-trips it", () => {
    const m = manifest();
    expect(parseManifest(JSON.parse(serializeManifest(m)))).toEqual(m);
  });

  it.each<[string, Partial<Record<keyof ImageManifest, unknown>>]>([
    ["schema", { schema: "weft.image/v0" }],
    ["kind", { kind: "floppy" }],
    ["format", { format: "vmdk" }],
    ["file", { file: "../etc/passwd" }],
    ["file", { file: "" }],
    ["size", { size: -1 }],
    ["size", { size: 1.5 }],
    ["sha256", { sha256: "ABC" }],
    ["packages", { packages: { a: 1 } }],
    ["details", { details: { a: null } }],
    ["inputKey", { inputKey: undefined }],
  ])("refuses a bad %s", (field, over) => {
    expect(() => parseManifest(manifest(over))).toThrow(new RegExp(`field "${field}"`));
    expect(() => parseManifest(manifest(over))).toThrow(ImageError);
  });
});

describe("cache check", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const setup = async (content = CONTENT, m = manifest()) => {
    const dir = await mkdtemp(join(tmpdir(), "weft-images-cache-"));
    dirs.push(dir);
    await writeFile(join(dir, m.file), content);
    await writeFile(join(dir, manifestFileName(m.name)), serializeManifest(m));
    return dir;
  };

  it("reuses an intact artifact built with the current key", async () => {
    const dir = await setup();
    const v = await checkCached(dir, ["maintenance-kernel"], KEY);
    expect(v.fresh).toBe(true);
    expect(await readManifestsIn(dir)).toHaveLength(1);
  });

  it("rebuilds when the inputs changed", async () => {
    const v = await checkCached(await setup(), ["maintenance-kernel"], "3".repeat(64));
    expect(v).toEqual({ fresh: false, reason: "maintenance-kernel: inputs changed" });
  });

  it("detects a corrupted artifact of the same size", async () => {
    const v = await checkCached(await setup("pretend kernal"), ["maintenance-kernel"], KEY);
    expect(v).toMatchObject({ fresh: false, reason: expect.stringContaining("sha256 mismatch") });
  });

  it("detects a truncated artifact", async () => {
    const v = await checkCached(await setup("pretend"), ["maintenance-kernel"], KEY);
    expect(v).toMatchObject({ fresh: false, reason: expect.stringContaining("size") });
  });

  it("rebuilds when a manifest is missing", async () => {
    const v = await checkCached(await setup(), ["maintenance-kernel", "maintenance-initrd"], KEY);
    expect(v).toEqual({ fresh: false, reason: "maintenance-initrd: no manifest" });
  });
});
