// `weft-images list [--cache DIR] [-o table|json]`: the manifests in the cache.
import { join } from "node:path";
import { readManifestsIn, type ImageManifest } from "../core/manifest.js";
import { RECIPES } from "../recipes/index.js";
import { formatBytes, table } from "./format.js";

export async function listManifests(cacheDir: string): Promise<ImageManifest[]> {
  const out: ImageManifest[] = [];
  for (const r of RECIPES) out.push(...(await readManifestsIn(join(cacheDir, r.name))));
  return out;
}

export async function listCommand(cacheDir: string, output: "table" | "json"): Promise<number> {
  const manifests = await listManifests(cacheDir);
  if (output === "json") {
    process.stdout.write(`${JSON.stringify(manifests, null, 2)}\n`);
    return 0;
  }
  const rows: string[][] = [["NAME", "KIND", "FORMAT", "SIZE", "SHA256", "BUILT", "FILE"]];
  for (const m of manifests) {
    rows.push([
      m.name,
      m.kind,
      m.format,
      formatBytes(m.size),
      m.sha256.slice(0, 16),
      m.builtAt,
      join(cacheDir, m.recipe, m.file),
    ]);
  }
  process.stdout.write(`${table(rows)}\n`);
  return 0;
}
