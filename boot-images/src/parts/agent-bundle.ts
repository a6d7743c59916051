// The agent as one file: esbuild bundles agent/src/main.ts from the working tree (workspace
// packages such as @weft/wire are taken from their sources, not from a possibly stale dist),
// so every image build ships the agent as it is now. The bundle's digest is part of the key.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { build, type Plugin } from "esbuild";
import { sha256Text } from "../core/hash.js";

export interface AgentBundle {
  readonly code: Buffer;
  readonly sha256: string;
}

function workspaceSources(repoRoot: string): Plugin {
  return {
    name: "weft-workspace-sources",
    setup(b) {
      b.onResolve({ filter: /^@weft\/[a-z-]+$/ }, (args) => {
        const dir = join(repoRoot, args.path.slice("@weft/".length));
        const src = join(dir, "src", "index.ts");
        return existsSync(src) ? { path: src } : undefined;
      });
    },
  };
}

export async function bundleAgent(repoRoot: string): Promise<AgentBundle> {
  const entry = join(repoRoot, "agent", "src", "main.ts");
  await readFile(entry); // a clear ENOENT before esbuild's own message
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    write: false,
    outfile: "agent.mjs",
    logLevel: "silent",
    legalComments: "none",
    // Bundled CommonJS dependencies may call require() for Node built-ins.
    banner: {
      js: 'import { createRequire as __weftCreateRequire } from "node:module";\nconst require = __weftCreateRequire(import.meta.url);',
    },
    plugins: [workspaceSources(repoRoot)],
  });
  const file = result.outputFiles[0];
  if (!file) throw new Error("esbuild produced no output for the agent");
  const code = Buffer.from(file.contents);
  return { code, sha256: sha256Text(code) };
}
