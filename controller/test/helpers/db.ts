// A fresh SQLite file with the project's migrations applied, for tests of the store.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultMigrationsDir, openDb, type Db } from "../../src/store/db.js";
import { migrateSqlite } from "../../src/store/migrate.js";

export interface TempDb {
  db: Db;
  url: string;
  dir: string;
  cleanup: () => Promise<void>;
}

export function tempDb(prefix = "weft-db-"): TempDb {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const url = `file:${path.join(dir, "weft.db")}`;
  migrateSqlite(url, defaultMigrationsDir);
  const db = openDb(url);
  return {
    db,
    url,
    dir,
    cleanup: async () => {
      await db.$disconnect();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
