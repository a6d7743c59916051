// Opening the store. SQLite (through better-sqlite3) is the embedded default: a file under the
// data directory, nothing to start.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaClient } from "./generated/client.js";

export type Db = InstanceType<typeof PrismaClient>;

/** Where the repository keeps its migrations, relative to this module (src/ or dist/). */
export const defaultMigrationsDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../prisma/migrations",
);

/** A `file:` URL or a plain path to the SQLite database file. */
export function sqlitePath(url: string): string {
  return url.startsWith("file:") ? url.slice("file:".length) : url;
}

export function openDb(url: string): Db {
  // WAL lets the API read while the DHCP server writes leases; busy_timeout makes two
  // controllers on one file wait for each other instead of failing.
  const adapter = new PrismaBetterSqlite3({ url: sqlitePath(url), timeout: 5000 });
  return new PrismaClient({ adapter });
}
