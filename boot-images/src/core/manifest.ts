// The manifest written beside each artifact. It is self-describing: whoever imports an image
// (the controller's `weft images import`) needs only this file and the artifact next to it.
//
// Example (maintenance-initrd.manifest.json):
//   { "schema": "weft.image/v1", "name": "maintenance-initrd", "kind": "initrd",
//     "format": "cpio.zst", "file": "maintenance-initrd.cpio.zst", "size": 31457280,
//     "sha256": "…", "recipe": "maintenance", "inputKey": "…", "builtAt": "…",
//     "buildSeconds": 41.2, "packages": { "busybox-static": "1:1.35.0-4+deb12u1+b1", … },
//     "inputs": { "agent-bundle": "…", … }, "details": { "kernelRelease": "6.1.0-56-amd64" } }
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ImageError } from "./errors.js";

export const MANIFEST_SCHEMA = "weft.image/v1";
export const MANIFEST_SUFFIX = ".manifest.json";

/** What the artifact is for. */
export type ImageKind = "kernel" | "initrd" | "host-rootfs" | "guest-disk";

/**
 * How the artifact's bytes are laid out:
 * - `bzImage`: a Linux kernel as the boot loader loads it;
 * - `cpio.zst`, `cpio.lz4`: a newc cpio archive compressed with zstd or legacy-frame lz4
 *   (an initramfs);
 * - `ext4.gz`: a raw ext4 filesystem image compressed with gzip, to be streamed through a
 *   decompressor onto a partition and grown to fill it;
 * - `qcow2`: a qcow2 disk image (compressed clusters, no backing file).
 */
export type ImageFormat = "bzImage" | "cpio.zst" | "cpio.lz4" | "ext4.gz" | "qcow2";

export interface ImageManifest {
  readonly schema: typeof MANIFEST_SCHEMA;
  readonly name: string;
  readonly kind: ImageKind;
  readonly format: ImageFormat;
  /** File name of the artifact, in the same folder as the manifest. */
  readonly file: string;
  readonly size: number;
  readonly sha256: string;
  readonly recipe: string;
  readonly inputKey: string;
  readonly builtAt: string;
  readonly buildSeconds: number;
  /** Debian packages the artifact contains or was built from → version. */
  readonly packages: Readonly<Record<string, string>>;
  /** The digests that went into the input key, for explaining a rebuild. */
  readonly inputs: Readonly<Record<string, string>>;
  /** Kind-specific facts: kernel release, filesystem label, uncompressed size, boot method. */
  readonly details: Readonly<Record<string, string | number | boolean>>;
}

const KINDS: readonly ImageKind[] = ["kernel", "initrd", "host-rootfs", "guest-disk"];
const FORMATS: readonly ImageFormat[] = ["bzImage", "cpio.zst", "cpio.lz4", "ext4.gz", "qcow2"];

export function manifestFileName(imageName: string): string {
  return `${imageName}${MANIFEST_SUFFIX}`;
}

/** Validates a parsed manifest; throws `bad-manifest` naming the first field that is wrong. */
export function parseManifest(value: unknown, source = "manifest"): ImageManifest {
  const bad = (field: string): never => {
    throw new ImageError("bad-manifest", `${source}: field "${field}" is missing or invalid`);
  };
  if (value === null || typeof value !== "object" || Array.isArray(value)) bad("(root)");
  const m = value as Record<string, unknown>;
  if (m["schema"] !== MANIFEST_SCHEMA) bad("schema");
  for (const f of ["name", "file", "recipe", "inputKey", "builtAt"] as const) {
    if (typeof m[f] !== "string" || m[f] === "") bad(f);
  }
  if (typeof m["file"] === "string" && (m["file"].includes("/") || m["file"].startsWith("."))) bad("file");
  if (!KINDS.includes(m["kind"] as ImageKind)) bad("kind");
  if (!FORMATS.includes(m["format"] as ImageFormat)) bad("format");
  if (!Number.isSafeInteger(m["size"]) || (m["size"] as number) < 0) bad("size");
  if (typeof m["sha256"] !== "string" || !/^[0-9a-f]{64}$/.test(m["sha256"])) bad("sha256");
  if (typeof m["buildSeconds"] !== "number" || !Number.isFinite(m["buildSeconds"])) bad("buildSeconds");
  for (const f of ["packages", "inputs"] as const) {
    const rec = m[f];
    if (rec === null || typeof rec !== "object" || Array.isArray(rec)) bad(f);
    for (const v of Object.values(rec as object)) if (typeof v !== "string") bad(f);
  }
  const details = m["details"];
  if (details === null || typeof details !== "object" || Array.isArray(details)) bad("details");
  for (const v of Object.values(details as object)) {
    if (!["string", "number", "boolean"].includes(typeof v)) bad("details");
  }
  return m as unknown as ImageManifest;
}

export function serializeManifest(m: ImageManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

export async function readManifest(path: string): Promise<ImageManifest> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ImageError("bad-manifest", `${path}: cannot read`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ImageError("bad-manifest", `${path}: not JSON`, { cause: err });
  }
  return parseManifest(parsed, path);
}

/** All manifests directly inside `dir` (one folder per recipe in the cache). */
export async function readManifestsIn(dir: string): Promise<ImageManifest[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: ImageManifest[] = [];
  for (const n of names.sort()) {
    if (n.endsWith(MANIFEST_SUFFIX)) out.push(await readManifest(join(dir, n)));
  }
  return out;
}
