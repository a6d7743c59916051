// Applies prisma/migrations at start-up without Prisma's schema engine. It keeps the same
// `_prisma_migrations` bookkeeping as `prisma migrate deploy` (sha256 of each migration.sql),
// so the CLI's `migrate status`/`deploy` accept a database migrated here, and vice versa.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { WeftError } from "../errors.js";
import { sqlitePath } from "./db.js";

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir: string): Migration[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(dir, d.name, "migration.sql")))
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name, "migration.sql"), "utf8");
      return { name, sql, checksum: crypto.createHash("sha256").update(sql).digest("hex") };
    });
}

// The table as Prisma's engine creates it on SQLite.
const BOOKKEEPING = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" TEXT PRIMARY KEY NOT NULL,
  "checksum" TEXT NOT NULL,
  "finished_at" DATETIME,
  "migration_name" TEXT NOT NULL,
  "logs" TEXT,
  "rolled_back_at" DATETIME,
  "started_at" DATETIME NOT NULL DEFAULT current_timestamp,
  "applied_steps_count" INTEGER UNSIGNED NOT NULL DEFAULT 0
)`;

/** Timestamps as Prisma's engine writes them on SQLite (ISO 8601 with an explicit offset). */
const timestamp = () => new Date().toISOString().replace("Z", "+00:00");

export interface MigrateResult {
  applied: string[];
  total: number;
}

/**
 * Brings a SQLite database up to date. Idempotent. Safe when two controllers start at once:
 * the whole check-and-apply runs in one EXCLUSIVE transaction (SQLite DDL is transactional),
 * so the second process waits and then finds nothing left to do.
 */
export function migrateSqlite(url: string, migrationsDir: string): MigrateResult {
  const file = sqlitePath(url);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const migrations = readMigrations(migrationsDir);
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: 15_000 });
    db.pragma("journal_mode = WAL");
  } catch (err) {
    throw new WeftError(
      "unavailable",
      "DB_OPEN_FAILED",
      `cannot open database ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  try {
    const applied: string[] = [];
    db.transaction(() => {
      db.exec(BOOKKEEPING);
      const done = new Map<string, { checksum: string; finished: boolean }>();
      const rows = db
        .prepare(
          `SELECT migration_name, checksum, finished_at FROM _prisma_migrations WHERE rolled_back_at IS NULL`,
        )
        .all() as { migration_name: string; checksum: string; finished_at: unknown }[];
      for (const r of rows)
        done.set(r.migration_name, { checksum: r.checksum, finished: r.finished_at !== null });
      for (const m of migrations) {
        const prior = done.get(m.name);
        if (prior?.finished) {
          if (prior.checksum !== m.checksum) {
            throw new WeftError(
              "conflict",
              "MIGRATION_MODIFIED",
              `migration ${m.name} was changed after it was applied to ${file}`,
            );
          }
          continue;
        }
        if (prior) {
          throw new WeftError(
            "conflict",
            "MIGRATION_FAILED_BEFORE",
            `migration ${m.name} started earlier but never finished on ${file}; resolve it with prisma migrate resolve`,
          );
        }
        const started = timestamp();
        db.exec(m.sql);
        db.prepare(
          `INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
           VALUES (?, ?, ?, ?, ?, 1)`,
        ).run(crypto.randomUUID(), m.checksum, timestamp(), m.name, started);
        applied.push(m.name);
      }
    }).exclusive();
    return { applied, total: migrations.length };
  } catch (err) {
    if (err instanceof WeftError) throw err;
    throw new WeftError(
      "unavailable",
      "DB_MIGRATE_FAILED",
      `cannot migrate ${file}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  } finally {
    db.close();
  }
}
