// Builds recipes into the cache: plan (compute the input key), reuse what is cached and
// intact, otherwise build in a scratch folder and publish artifact then manifest.
import { appendFileSync } from "node:fs";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import type { CommandRunner } from "./core/exec.js";
import { join } from "node:path";
import { cachePaths, checkCached } from "./core/cache.js";
import { BuildError } from "./core/errors.js";
import { acquireLock } from "./core/lock.js";
import { LoggedRunner } from "./core/exec.js";
import { sha256File } from "./core/hash.js";
import { computeInputKey } from "./core/key.js";
import { MANIFEST_SCHEMA, manifestFileName, serializeManifest, type ImageManifest } from "./core/manifest.js";
import { bundleAgent, type AgentBundle } from "./parts/agent-bundle.js";
import type { Recipe, RecipeContext } from "./recipes/recipe.js";
import { unmountUnder } from "./system/mounts.js";

export interface BuildOptions {
  readonly cacheDir: string;
  readonly repoRoot: string;
  readonly recipesDir: string;
  readonly recipes: readonly Recipe[];
  /** Progress lines for a human (stderr). */
  readonly progress: (line: string) => void;
  readonly now?: () => number;
  /** The agent bundle to use; by default it is bundled from the working tree once per call. */
  readonly agent?: Promise<AgentBundle>;
}

export interface RecipeOutcome {
  readonly recipe: string;
  readonly status: "cached" | "built" | "failed";
  readonly seconds: number;
  readonly manifests: readonly ImageManifest[];
  readonly reason?: string;
  readonly error?: BuildError;
}

export async function buildImages(opts: BuildOptions): Promise<RecipeOutcome[]> {
  const now = opts.now ?? Date.now;
  const paths = cachePaths(opts.cacheDir);
  await mkdir(join(opts.cacheDir, "logs"), { recursive: true });
  let agent: Promise<AgentBundle> | undefined;
  const outcomes: RecipeOutcome[] = [];

  for (const recipe of opts.recipes) {
    const started = now();
    const logFile = paths.log(recipe.name);
    const workDir = paths.work(recipe.name);
    let release: () => Promise<void>;
    try {
      await mkdir(join(opts.cacheDir, "work"), { recursive: true });
      release = await acquireLock(`${workDir}.lock`, recipe.name);
    } catch (err) {
      const error = new BuildError(recipe.name, "take the build lock", logFile, err);
      opts.progress(error.message);
      outcomes.push({ recipe: recipe.name, status: "failed", seconds: 0, manifests: [], error });
      continue;
    }
    await writeFile(logFile, `# weft-images build ${recipe.name} ${new Date(started).toISOString()}\n`);
    const run = new LoggedRunner(logFile);
    let current = "plan";
    const ctx = contextFor(
      opts,
      run,
      workDir,
      (name) => {
        current = name;
        opts.progress(`${recipe.name}: ${name}`);
      },
      () => (agent ??= opts.agent ?? bundleAgent(opts.repoRoot)),
    );
    const seconds = (): number => Math.round((now() - started) / 100) / 10;
    try {
      const plan = await recipe.plan(ctx);
      const key = computeInputKey(plan.key);
      run.log(`# input key ${key}`);
      const recipeDir = paths.recipeDir(recipe.name);
      current = "check the cache";
      const verdict = await checkCached(recipeDir, recipe.artifacts, key);
      if (verdict.fresh) {
        opts.progress(`${recipe.name}: cached (key ${key.slice(0, 12)}), ${seconds()} s`);
        outcomes.push({
          recipe: recipe.name,
          status: "cached",
          seconds: seconds(),
          manifests: verdict.manifests,
        });
        continue;
      }
      opts.progress(`${recipe.name}: building (${verdict.reason})`);
      await clearWorkDir(run, workDir);
      await mkdir(workDir, { recursive: true });
      const built = await plan.build();
      current = "publish";
      await mkdir(recipeDir, { recursive: true });
      const inputs: Record<string, string> = { ...plan.key.extra };
      for (const [f, d] of Object.entries(plan.key.files)) inputs[`recipe:${f}`] = d;
      const manifests: ImageManifest[] = [];
      for (const a of built.artifacts) {
        const file = `${a.name}.${a.extension}`;
        const manifestPath = join(recipeDir, manifestFileName(a.name));
        await rm(manifestPath, { force: true });
        await rename(a.path, join(recipeDir, file));
        const st = await stat(join(recipeDir, file));
        const m: ImageManifest = {
          schema: MANIFEST_SCHEMA,
          name: a.name,
          kind: a.kind,
          format: a.format,
          file,
          size: st.size,
          sha256: await sha256File(join(recipeDir, file)),
          recipe: recipe.name,
          inputKey: key,
          builtAt: new Date(now()).toISOString(),
          buildSeconds: seconds(),
          packages: built.packages ?? plan.key.packages,
          inputs,
          details: a.details,
        };
        await writeFile(`${manifestPath}.tmp`, serializeManifest(m));
        await rename(`${manifestPath}.tmp`, manifestPath);
        manifests.push(m);
      }
      await clearWorkDir(run, workDir);
      opts.progress(`${recipe.name}: built in ${seconds()} s`);
      outcomes.push({
        recipe: recipe.name,
        status: "built",
        seconds: seconds(),
        manifests,
        reason: verdict.reason,
      });
    } catch (err) {
      const error = new BuildError(recipe.name, current, logFile, err);
      appendFileSync(logFile, `# FAILED in step "${current}": ${error.message}\n`);
      if (err instanceof Error && err.stack) appendFileSync(logFile, `${err.stack}\n`);
      opts.progress(error.message);
      outcomes.push({ recipe: recipe.name, status: "failed", seconds: seconds(), manifests: [], error });
    } finally {
      await release();
    }
  }
  return outcomes;
}

export type PlanOptions = Pick<BuildOptions, "cacheDir" | "repoRoot" | "recipesDir" | "agent">;

function contextFor(
  opts: PlanOptions & { readonly now?: () => number },
  run: LoggedRunner,
  workDir: string,
  onStep: (name: string) => void,
  agent: () => Promise<AgentBundle>,
): RecipeContext {
  const now = opts.now ?? Date.now;
  return {
    repoRoot: opts.repoRoot,
    recipesDir: opts.recipesDir,
    cacheDir: opts.cacheDir,
    workDir,
    run,
    async step(name, fn) {
      onStep(name);
      const t = now();
      run.log(`## step: ${name}`);
      const r = await fn();
      run.log(`## step done: ${name} (${((now() - t) / 1000).toFixed(1)} s)`);
      return r;
    },
    agent,
  };
}

/** The input key a recipe has now, without building (its plan log goes to logs/<recipe>.plan.log). */
export async function currentKey(opts: PlanOptions, recipe: Recipe): Promise<string> {
  const paths = cachePaths(opts.cacheDir);
  await mkdir(join(opts.cacheDir, "logs"), { recursive: true });
  const logFile = join(opts.cacheDir, "logs", `${recipe.name}.plan.log`);
  await writeFile(logFile, "");
  const run = new LoggedRunner(logFile);
  let agent: Promise<AgentBundle> | undefined;
  const ctx = contextFor(
    opts,
    run,
    paths.work(recipe.name),
    () => undefined,
    () => (agent ??= opts.agent ?? bundleAgent(opts.repoRoot)),
  );
  return computeInputKey((await recipe.plan(ctx)).key);
}

/** Empties a scratch folder without ever following a mount left inside it into the live system. */
async function clearWorkDir(run: CommandRunner, dir: string): Promise<void> {
  await unmountUnder(run, dir);
  await run.run("rm", ["-rf", "--one-file-system", dir]);
}
