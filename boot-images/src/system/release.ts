// The digest of a suite's signed Release file (InRelease) on the mirror: it changes whenever the
// archive publishes new package versions, so it stands for "the package versions debootstrap
// would install" in the input key. When the mirror cannot be reached, apt's own copy of the
// file (from the last `apt-get update`) is used instead.
import { readFile } from "node:fs/promises";
import { sha256Text } from "../core/hash.js";
import type { Mirror } from "./mirror.js";

/** apt's file name for a downloaded index: the URI without scheme, `/` turned into `_`. */
export function aptListName(uri: string, suite: string, file: string): string {
  return `${uri
    .replace(/^[a-z+]+:\/\//, "")
    .replace(/\/+$/, "")
    .replaceAll("/", "_")}_dists_${suite}_${file}`;
}

export interface ReleaseDigest {
  readonly sha256: string;
  readonly source: "mirror" | "apt-lists";
}

export async function suiteReleaseDigest(
  mirror: Mirror,
  options: { timeoutMs?: number; listsDir?: string; fetchImpl?: typeof fetch } = {},
): Promise<ReleaseDigest> {
  const doFetch = options.fetchImpl ?? fetch;
  try {
    const res = await doFetch(`${mirror.uri}/dists/${mirror.suite}/InRelease`, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    if (res.ok) return { sha256: sha256Text(Buffer.from(await res.arrayBuffer())), source: "mirror" };
  } catch {
    // fall through to apt's copy
  }
  const local = `${options.listsDir ?? "/var/lib/apt/lists"}/${aptListName(mirror.uri, mirror.suite, "InRelease")}`;
  try {
    return { sha256: sha256Text(await readFile(local)), source: "apt-lists" };
  } catch (err) {
    throw new Error(`cannot read the ${mirror.suite} Release file from ${mirror.uri} nor ${local}`, {
      cause: err,
    });
  }
}
