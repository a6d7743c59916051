import fs from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import type { ImageView } from "@weft/wire";
import { CliError, EXIT } from "../client.js";
import { type CliContext, withOutput } from "../context.js";
import { render, type Column } from "../output.js";

const columns: Column<ImageView>[] = [
  { header: "NAME", get: (i) => i.name },
  { header: "KIND", get: (i) => i.kind },
  { header: "FORMAT", get: (i) => i.format },
  { header: "SIZE", get: (i) => `${(i.size / 1048576).toFixed(1)} MiB` },
  { header: "SHA256", get: (i) => i.sha256.slice(0, 16) },
  { header: "URL", get: (i) => i.url, wide: true },
];

/** Manifests in a boot-images cache: <cache>/<recipe>/<name>.manifest.json. */
function findManifests(cache: string): string[] {
  if (!fs.existsSync(cache))
    throw new CliError(`no image cache at ${cache}; build images with npm run images`, EXIT.usage);
  const out: string[] = [];
  for (const d of fs.readdirSync(cache, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    for (const f of fs.readdirSync(path.join(cache, d.name))) {
      if (f.endsWith(".manifest.json")) out.push(path.join(cache, d.name, f));
    }
  }
  return out.sort();
}

export function register(program: Command, ctx: CliContext): void {
  const images = program
    .command("images")
    .alias("image")
    .description("images the controller serves: list, import, delete");

  withOutput(images.command("list").alias("ls").description("list imported images")).action(
    async (_o, cmd: Command) => {
      const r = await ctx.client().get<{ items: ImageView[] }>("/v1/images");
      ctx.out(render(ctx.format(cmd), r, r.items, columns));
    },
  );

  withOutput(
    images
      .command("import [manifests...]")
      .description("import built images (their manifests); by default every image in the build cache")
      .option(
        "--cache <dir>",
        "the boot-images cache",
        ctx.env["WEFT_IMAGES_CACHE"] ?? "/var/cache/weft/images",
      ),
  ).action(async (manifests: string[], o: { cache: string }, cmd: Command) => {
    const files = (manifests.length ? manifests : findManifests(o.cache)).map((f) => path.resolve(f));
    if (!files.length) throw new CliError(`no image manifests in ${o.cache}`, EXIT.usage);
    const done: (ImageView & { unchanged: boolean })[] = [];
    for (const f of files) {
      ctx.err(`importing ${f}\n`);
      done.push(await ctx.client().request("POST", "/v1/images", { manifest: f }));
    }
    ctx.out(
      render(ctx.format(cmd), { items: done }, done, [
        ...columns.slice(0, 2),
        { header: "RESULT", get: (i) => (i.unchanged ? "unchanged" : "imported") },
        ...columns.slice(2),
      ]),
    );
  });

  images
    .command("delete <name>")
    .description("delete an image (refused while guests use it)")
    .action(async (name: string) => {
      await ctx.client().request("DELETE", `/v1/images/${encodeURIComponent(name)}`);
      ctx.err(`deleted ${name}\n`);
    });
}
