// `weft-images build [--only NAME] [--cache DIR]`: builds what is missing or stale, prints a
// timing table (stdout) and progress (stderr). Exit status 1 when any recipe failed.
import { buildImages } from "../build.js";
import { ImageError } from "../core/errors.js";
import { RECIPES, findRecipe, knownNames } from "../recipes/index.js";
import { formatBytes, table } from "./format.js";

export interface BuildCommand {
  readonly cacheDir: string;
  readonly repoRoot: string;
  readonly recipesDir: string;
  readonly only: readonly string[];
  readonly json: boolean;
}

export async function buildCommand(cmd: BuildCommand): Promise<number> {
  const recipes = cmd.only.length
    ? cmd.only.map((n) => {
        const r = findRecipe(n);
        if (!r) throw new ImageError("usage", `unknown image "${n}" (known: ${knownNames().join(", ")})`);
        return r;
      })
    : RECIPES;
  const unique = RECIPES.filter((r) => recipes.includes(r));
  const outcomes = await buildImages({
    cacheDir: cmd.cacheDir,
    repoRoot: cmd.repoRoot,
    recipesDir: cmd.recipesDir,
    recipes: unique,
    progress: (l) => process.stderr.write(`weft-images: ${l}\n`),
  });
  if (cmd.json) {
    process.stdout.write(
      `${JSON.stringify(
        outcomes.map((o) => ({ ...o, error: o.error?.message })),
        null,
        2,
      )}\n`,
    );
  } else {
    const rows: string[][] = [["RECIPE", "STATUS", "SECONDS", "IMAGE", "SIZE", "SHA256"]];
    for (const o of outcomes) {
      if (o.manifests.length === 0) rows.push([o.recipe, o.status, o.seconds.toFixed(1), "-", "-", "-"]);
      for (const m of o.manifests) {
        rows.push([
          o.recipe,
          o.status,
          o.seconds.toFixed(1),
          m.file,
          formatBytes(m.size),
          m.sha256.slice(0, 16),
        ]);
      }
    }
    process.stdout.write(`${table(rows)}\n`);
  }
  return outcomes.some((o) => o.status === "failed") ? 1 : 0;
}
