// Prisma CLI configuration. The CLI's native schema engine cannot be downloaded on these
// machines, so migrations run through prisma/engine/schema-engine: an executable that speaks
// the engine's JSON-RPC and hands every call to @prisma/schema-engine-wasm.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "prisma/config";

const root = path.dirname(fileURLToPath(import.meta.url));
process.env["PRISMA_SCHEMA_ENGINE_BINARY"] ??= path.join(root, "prisma/engine/schema-engine");

export default defineConfig({
  schema: path.join(root, "prisma/schema.prisma"),
  migrations: { path: path.join(root, "prisma/migrations") },
  datasource: {
    url: process.env["DATABASE_URL"] ?? `file:${path.join(root, ".weft/dev.db")}`,
  },
});
