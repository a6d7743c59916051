// The cache folder, outside the source tree:
//   <cache>/<recipe>/<image>.<ext>            the artifact
//   <cache>/<recipe>/<image>.manifest.json    its manifest (written last)
//   <cache>/logs/<recipe>.log                 the last build's log
//   <cache>/work/<recipe>/                    scratch, kept when a build fails
//   <cache>/debootstrap/<suite>/              downloaded packages, reused across builds
//   <cache>/host-base/<base key>/             the bootstrapped host root, reused while its key holds
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { sha256File } from "./hash.js";
import { manifestFileName, readManifest, type ImageManifest } from "./manifest.js";

export const cachePaths = (cacheDir: string) => ({
  recipeDir: (recipe: string) => join(cacheDir, recipe),
  log: (recipe: string) => join(cacheDir, "logs", `${recipe}.log`),
  work: (recipe: string) => join(cacheDir, "work", recipe),
  shared: (name: string) => join(cacheDir, name),
});

export type CacheVerdict =
  | { readonly fresh: true; readonly manifests: ImageManifest[] }
  | { readonly fresh: false; readonly reason: string };

/**
 * Whether every artifact of a recipe is cached under `key` and intact: the manifest parses, its
 * key is the current one, and the file's size and sha256 are the manifest's.
 */
export async function checkCached(
  recipeDir: string,
  artifacts: readonly string[],
  key: string,
): Promise<CacheVerdict> {
  const manifests: ImageManifest[] = [];
  for (const name of artifacts) {
    let m: ImageManifest;
    try {
      m = await readManifest(join(recipeDir, manifestFileName(name)));
    } catch {
      return { fresh: false, reason: `${name}: no manifest` };
    }
    if (m.inputKey !== key) return { fresh: false, reason: `${name}: inputs changed` };
    const file = join(recipeDir, m.file);
    const st = await stat(file).catch(() => undefined);
    if (!st) return { fresh: false, reason: `${name}: ${m.file} missing` };
    if (st.size !== m.size)
      return { fresh: false, reason: `${name}: size ${st.size} is not the manifest's ${m.size}` };
    const digest = await sha256File(file);
    if (digest !== m.sha256) return { fresh: false, reason: `${name}: sha256 mismatch (corrupted artifact)` };
    manifests.push(m);
  }
  return { fresh: true, manifests };
}
