import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { migrateSqlite } from "../src/store/migrate.js";

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-mig-"));
  const migs = path.join(dir, "migrations");
  const add = (name: string, sql: string) => {
    fs.mkdirSync(path.join(migs, name), { recursive: true });
    fs.writeFileSync(path.join(migs, name, "migration.sql"), sql);
  };
  return { url: `file:${path.join(dir, "t.db")}`, migs, add, file: path.join(dir, "t.db") };
}

describe("the start-up migration runner", () => {
  it("applies migrations in name order once, and records them as Prisma does", () => {
    const t = setup();
    t.add("20260101000000_a", "CREATE TABLE a (x INTEGER);");
    t.add("20260102000000_b", "CREATE TABLE b (y INTEGER);\nINSERT INTO a VALUES (1);");
    expect(migrateSqlite(t.url, t.migs)).toEqual({
      applied: ["20260101000000_a", "20260102000000_b"],
      total: 2,
    });
    expect(migrateSqlite(t.url, t.migs)).toEqual({ applied: [], total: 2 });
    const db = new Database(t.file);
    const rows = db
      .prepare("SELECT migration_name, checksum, finished_at FROM _prisma_migrations ORDER BY 1")
      .all() as {
      checksum: string;
      finished_at: unknown;
    }[];
    expect(rows).toHaveLength(2);
    expect(rows[0]!.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]!.finished_at).not.toBeNull();
    expect(db.prepare("SELECT count(*) AS n FROM a").get()).toEqual({ n: 1 });
    db.close();
  });

  it("refuses a migration edited after it was applied", () => {
    const t = setup();
    t.add("20260101000000_a", "CREATE TABLE a (x INTEGER);");
    migrateSqlite(t.url, t.migs);
    t.add("20260101000000_a", "CREATE TABLE a (x TEXT);");
    expect(() => migrateSqlite(t.url, t.migs)).toThrow(/was changed after it was applied/);
  });

  it("leaves nothing half-applied when a migration fails", () => {
    const t = setup();
    t.add("20260101000000_a", "CREATE TABLE a (x INTEGER);");
    t.add("20260102000000_b", "CREATE TABLE b (y INTEGER);\nTHIS IS NOT SQL;");
    expect(() => migrateSqlite(t.url, t.migs)).toThrow(/cannot migrate/);
    const db = new Database(t.file);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
    db.close();
    expect(tables).toEqual([]);
  });

  it("refuses a file that is not a SQLite database without changing it", () => {
    const t = setup();
    t.add("20260101000000_a", "CREATE TABLE a (x INTEGER);");
    fs.writeFileSync(t.file, "garbage ".repeat(1000));
    expect(() => migrateSqlite(t.url, t.migs)).toThrow(/not a database/);
    expect(fs.readFileSync(t.file, "utf8")).toBe("garbage ".repeat(1000));
  });
});
