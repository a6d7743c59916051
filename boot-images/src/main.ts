#!/usr/bin/env node
// weft-images: builds and lists the boot images. The only place that reads the environment
// (WEFT_IMAGES_CACHE) and the command line, and the only place that sets the exit status:
// 0 success, 1 a build failed, 2 usage error.
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { buildCommand } from "./cli/build.js";
import { listCommand } from "./cli/list.js";
import { ImageError } from "./core/errors.js";

const DEFAULT_CACHE = "/var/cache/weft/images";
const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const USAGE = `usage:
  weft-images build [--only NAME]... [--cache DIR] [-o table|json]
  weft-images list [--cache DIR] [-o table|json]
images: maintenance (maintenance-kernel, maintenance-initrd), guest-base, host-bookworm
cache: --cache, else $WEFT_IMAGES_CACHE, else ${DEFAULT_CACHE}`;

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  const { values } = parseArgs({
    args: [...rest],
    options: {
      only: { type: "string", multiple: true },
      cache: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
    },
    strict: true,
    allowPositionals: false,
  });
  const cacheDir = resolve(values.cache ?? process.env["WEFT_IMAGES_CACHE"] ?? DEFAULT_CACHE);
  const output = values.output;
  if (output !== "table" && output !== "json") throw new ImageError("usage", `-o must be table or json`);
  switch (command) {
    case "build":
      return buildCommand({
        cacheDir,
        repoRoot: resolve(packageDir, ".."),
        recipesDir: join(packageDir, "recipes"),
        only: values.only ?? [],
        json: output === "json",
      });
    case "list":
      if (values.only) throw new ImageError("usage", "--only applies to build");
      return listCommand(cacheDir, output);
    default:
      throw new ImageError("usage", `unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const usage =
      (err instanceof ImageError && err.code === "usage") ||
      (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    process.stderr.write(`weft-images: ${err instanceof Error ? err.message : String(err)}\n`);
    if (usage) process.stderr.write(`${USAGE}\n`);
    process.exitCode = usage ? 2 : 1;
  },
);
