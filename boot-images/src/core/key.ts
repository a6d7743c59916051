// The input key of a recipe: a digest over everything that decides what the build produces.
// Two builds with the same key are interchangeable, so a cached artifact with the current key is
// reused instead of rebuilt.
import { canonicalJson, sha256Text } from "./hash.js";

export interface KeyInputs {
  /** Recipe name, e.g. "maintenance". */
  readonly recipe: string;
  /** The recipe's declared data (package lists, module lists, sizes, compression levels...). */
  readonly spec: unknown;
  /** Recipe files by path relative to the recipes folder → sha256 of their content. */
  readonly files: Readonly<Record<string, string>>;
  /** Debian packages the build takes files from → version. */
  readonly packages: Readonly<Record<string, string>>;
  /** Other digests that feed the build: the agent bundle, the mirror, the suite's Release file. */
  readonly extra: Readonly<Record<string, string>>;
}

/** Bumped when the key's own shape changes, so old caches are not mistaken for current ones. */
export const KEY_VERSION = 1;

export function computeInputKey(inputs: KeyInputs): string {
  return sha256Text(canonicalJson({ keyVersion: KEY_VERSION, ...inputs }));
}
