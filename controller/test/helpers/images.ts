import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/** Writes an artifact and its weft.image/v1 manifest; returns the manifest path. */
export function writeImage(dir: string, name: string, kind: string, format: string, bytes: Buffer): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = `${name}.bin`;
  fs.writeFileSync(path.join(dir, file), bytes);
  const manifest = {
    schema: "weft.image/v1",
    name,
    kind,
    format,
    file,
    size: bytes.length,
    sha256: crypto.createHash("sha256").update(bytes).digest("hex"),
  };
  const m = path.join(dir, `${name}.manifest.json`);
  fs.writeFileSync(m, JSON.stringify(manifest));
  return m;
}
