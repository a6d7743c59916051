// SQLite behind the wasm schema engine, through @prisma/adapter-better-sqlite3.
import { existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { PrismaBetterSqlite3 } from "@prisma/adapter-better-sqlite3";
import { UserFacingError } from "./errors.mjs";

/** @typedef {import("@prisma/driver-adapter-utils").SqlDriverAdapter} SqlDriverAdapter */
/** @typedef {import("@prisma/driver-adapter-utils").SqlQueryable} SqlQueryable */
/** @typedef {import("./providers.mjs").Provider} Provider */

/**
 * `file:./dev.db?connection_limit=1` → absolute path. Relative paths are taken from the
 * working directory, which the CLI sets to the project root when it starts the engine.
 * @param {string} url
 */
export function sqlitePath(url) {
  const bare = url.replace(/^file:(\/\/(?=\/))?/, "").replace(/\?.*$/, "");
  return bare === ":memory:" ? bare : path.resolve(bare);
}

/**
 * Opening a file that is not a database succeeds; only the first read fails. Probe it so the
 * user gets one clear sentence instead of an engine error deep inside a command.
 * @param {string} file
 */
function assertSqliteFile(file) {
  if (file === ":memory:" || !existsSync(file)) return;
  if (statSync(file).isDirectory()) {
    throw new UserFacingError(null, `${file} is a directory; DATABASE_URL must name a SQLite database file.`);
  }
  let db;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.prepare("SELECT count(*) FROM sqlite_master").get();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UserFacingError(
      null,
      `The file ${file} is not a usable SQLite database (${reason}). ` +
        "Check DATABASE_URL: it must name a SQLite database file, or a path where one can be created.",
    );
  } finally {
    db?.close();
  }
}

/**
 * The wasm engine replays whole migration scripts on the shadow database through
 * executeRaw, which prepares a single statement and refuses more. A statement-less query
 * with several statements is a script: run it with exec() on the same connection.
 * @template {SqlQueryable} Q
 * @param {Q} queryable
 * @param {SqlDriverAdapter} connection the adapter that owns the connection (for its script runner)
 * @returns {Q}
 */
function acceptScripts(queryable, connection) {
  const executeRaw = queryable.executeRaw.bind(queryable);
  queryable.executeRaw = async (query) => {
    try {
      return await executeRaw(query);
    } catch (error) {
      const multiple = error instanceof RangeError && /more than one statement/.test(error.message);
      if (!multiple || query.args.length > 0) throw error;
      await connection.executeScript(query.sql);
      return 0;
    }
  };
  return queryable;
}

/**
 * @param {SqlDriverAdapter} adapter
 * @returns {SqlDriverAdapter}
 */
function patchAdapter(adapter) {
  acceptScripts(adapter, adapter);
  const startTransaction = adapter.startTransaction.bind(adapter);
  adapter.startTransaction = async (level) => acceptScripts(await startTransaction(level), adapter);
  return adapter;
}

/** @type {Provider} */
export const sqlite = {
  name: "sqlite",
  matches: (url) => url.startsWith("file:"),

  async checkConnection(url) {
    const file = sqlitePath(url);
    if (file !== ":memory:" && !existsSync(file)) {
      throw new UserFacingError(
        "P1003",
        `Database \`${path.basename(file)}\` does not exist at \`${file}\`.`,
        {
          database_file_name: path.basename(file),
          database_file_path: file,
        },
      );
    }
    assertSqliteFile(file);
  },

  async createDatabase(url) {
    const file = sqlitePath(url);
    assertSqliteFile(file);
    if (file !== ":memory:") {
      mkdirSync(path.dirname(file), { recursive: true });
      new Database(file).close();
    }
    return path.basename(file);
  },

  adapterFactory({ url, shadowDatabaseUrl }) {
    const file = sqlitePath(url);
    assertSqliteFile(file);
    // better-sqlite3 creates a missing file but not its directory (.weft/ on a fresh clone).
    if (file !== ":memory:") mkdirSync(path.dirname(file), { recursive: true });
    const options = shadowDatabaseUrl ? { shadowDatabaseUrl: sqlitePath(shadowDatabaseUrl) } : {};
    const factory = new PrismaBetterSqlite3({ url: file }, options);
    return {
      provider: factory.provider,
      adapterName: factory.adapterName,
      connect: async () => patchAdapter(await factory.connect()),
      connectToShadowDb: async () => patchAdapter(await factory.connectToShadowDb()),
    };
  },

  overrides: {
    // The wasm engine's SQLite reset deletes the rows but keeps the tables, so `migrate reset`
    // would then fail to re-apply the first migration. Drop every schema object instead, on
    // the engine's connection (it may hold the database in exclusive locking mode).
    async reset({ connection, params }) {
      const keep = new Set(params?.filter?.externalTables ?? []);
      const { rows } = await connection.queryRaw(
        sql(
          "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'table') AND name NOT LIKE 'sqlite_%' " +
            "ORDER BY type = 'table'",
        ),
      );
      const drops = rows
        .filter(([, name]) => !keep.has(String(name)))
        .map(
          ([type, name]) =>
            `DROP ${type === "view" ? "VIEW" : "TABLE"} "${String(name).replaceAll('"', '""')}";`,
        );
      // With foreign keys enforced, dropping a referenced table fails; indexes and triggers
      // go with their tables.
      const fk = (await connection.queryRaw(sql("PRAGMA foreign_keys"))).rows[0]?.[0];
      await connection.executeScript(
        [
          "PRAGMA foreign_keys = OFF;",
          ...drops,
          `PRAGMA foreign_keys = ${Number(fk) ? "ON" : "OFF"};`,
          "VACUUM;",
        ].join("\n"),
      );
      return {};
    },

    // This wasm engine build treats a missing `_prisma_migrations` table as an error (P1014)
    // where the native engine sees a database Migrate has not touched yet. A read-only
    // diagnosis answers for it: with no table, nothing is applied, failed or edited.
    async diagnoseMigrationHistory({ engine, connection, params }) {
      if (await hasMigrationsTable(connection)) return engine.diagnoseMigrationHistory(params);
      const unapplied = params.migrationsList.migrationDirectories.map(
        (/** @type {{ path: string }} */ d) => d.path,
      );
      return {
        editedMigrationNames: [],
        failedMigrationNames: [],
        hasMigrationsTable: false,
        history:
          unapplied.length > 0
            ? { diagnostic: "databaseIsBehind", unappliedMigrationNames: unapplied }
            : null,
      };
    },
    // `migrate dev` and `migrate resolve` create the table right after these calls anyway, so
    // creating it first (empty, as the engine would) gives the engine what it expects.
    async devDiagnostic({ engine, connection, params }) {
      await connection.executeScript(MIGRATIONS_TABLE);
      return engine.devDiagnostic(params);
    },
    async markMigrationApplied({ engine, connection, params }) {
      await connection.executeScript(MIGRATIONS_TABLE);
      return engine.markMigrationApplied(params);
    },
    async markMigrationRolledBack({ engine, connection, params }) {
      if (await hasMigrationsTable(connection)) return engine.markMigrationRolledBack(params);
      throw new UserFacingError(
        "P3011",
        `Migration ${params.migrationName} cannot be rolled back because it was never applied to the database.`,
        { migration_name: params.migrationName },
      );
    },

    // These two replay the migrations on a shadow database, but this engine build only reaches
    // the shadow-database factory there once a diagnostic call has used it in the same process
    // ("SQLite shadow DB must be provided through an external factory"). `migrate dev` on a
    // fresh database makes no such call first, so make one (in memory, cheap).
    async evaluateDataLoss({ engine, params }) {
      await openShadowDatabase(engine, params);
      return engine.evaluateDataLoss(params);
    },
    async createMigration({ engine, params }) {
      await openShadowDatabase(engine, params);
      return engine.createMigration(params);
    },
  },
};

let shadowOpened = false;

/**
 * @param {import("@prisma/schema-engine-wasm").SchemaEngine} engine
 * @param {{ migrationsList: import("@prisma/schema-engine-wasm").MigrationList, filters: import("@prisma/schema-engine-wasm").SchemaFilter }} params
 */
async function openShadowDatabase(engine, { migrationsList, filters }) {
  if (shadowOpened || migrationsList.migrationDirectories.length === 0) return;
  await engine.diagnoseMigrationHistory({ optInToShadowDatabase: true, migrationsList, filters });
  shadowOpened = true;
}

// The migrations table exactly as the engine creates it when it applies migrations.
const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    TEXT PRIMARY KEY NOT NULL,
    "checksum"              TEXT NOT NULL,
    "finished_at"           DATETIME,
    "migration_name"        TEXT NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        DATETIME,
    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,
    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0
);`;

/** @param {string} text */
function sql(text) {
  return { sql: text, args: [], argTypes: [] };
}

/** @param {SqlDriverAdapter} connection */
async function hasMigrationsTable(connection) {
  const { rows } = await connection.queryRaw(
    sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_prisma_migrations'"),
  );
  return rows.length > 0;
}
