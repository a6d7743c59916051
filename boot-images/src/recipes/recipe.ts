// What a recipe is: a name, the artifacts it produces, and a plan. Planning is cheap and
// side-effect free on the outputs (it only reads the machine: package versions, the agent
// bundle, the mirror) and yields the key inputs; building runs only when the key is not cached.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LoggedRunner } from "../core/exec.js";
import { sha256Text } from "../core/hash.js";
import type { KeyInputs } from "../core/key.js";
import type { ImageFormat, ImageKind } from "../core/manifest.js";
import type { AgentBundle } from "../parts/agent-bundle.js";

export interface RecipeContext {
  readonly repoRoot: string;
  /** boot-images/recipes: the recipe files (init scripts, units, configs). */
  readonly recipesDir: string;
  /** The cache root; shared caches (e.g. downloaded packages) live under it. */
  readonly cacheDir: string;
  /** Scratch folder of this build, empty at the start, kept when the build fails. */
  readonly workDir: string;
  readonly run: LoggedRunner;
  /** Runs one named step: timed, logged, and a failure names the step. */
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** The agent bundled from the working tree (built once per command). */
  agent(): Promise<AgentBundle>;
}

export interface BuiltArtifact {
  readonly name: string;
  readonly kind: ImageKind;
  readonly format: ImageFormat;
  /** File extension of the published file, e.g. "cpio.zst". */
  readonly extension: string;
  /** Where the build left it (inside workDir). */
  readonly path: string;
  readonly details: Readonly<Record<string, string | number | boolean>>;
}

export interface Plan {
  readonly key: KeyInputs;
  /** Packages recorded in the manifests (may be wider than the key's, e.g. a whole rootfs). */
  build(): Promise<{ artifacts: BuiltArtifact[]; packages?: Record<string, string> }>;
}

export interface Recipe {
  readonly name: string;
  readonly artifacts: readonly string[];
  plan(ctx: RecipeContext): Promise<Plan>;
}

/** sha256 of each named recipe file (paths relative to the recipes folder). */
export async function hashRecipeFiles(
  recipesDir: string,
  names: readonly string[],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of names) out[n] = sha256Text(await readFile(join(recipesDir, n)));
  return out;
}
