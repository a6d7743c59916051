// The Prisma CLI, run for real, through prisma/engine/schema-engine (the stand-in for the native
// schema engine) against throwaway SQLite files. Nothing here sets PRISMA_SCHEMA_ENGINE_BINARY:
// finding the engine is prisma.config.ts's job, as it is for a developer.
import { spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const cli = path.join(repo, "node_modules/prisma/build/index.js");
const migrationNames = readdirSync(path.join(repo, "prisma/migrations"), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);
const models = [
  ...readFileSync(path.join(repo, "prisma/schema.prisma"), "utf8").matchAll(/^model (\w+)/gm),
].map((m) => m[1] ?? "");

interface Run {
  code: number | null;
  output: string;
}

/** Runs the CLI to completion, or kills it after two minutes: a hang is a failure too. */
function prisma(args: string[], options: { db: string; cwd?: string }): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: `file:${options.db}` };
  delete env["PRISMA_SCHEMA_ENGINE_BINARY"];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: options.cwd ?? repo,
      env,
      timeout: 120_000,
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

function query<T>(file: string, sql: string): T[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all() as T[];
  } finally {
    db.close();
  }
}

function execute(file: string, sql: string): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

function tables(file: string): string[] {
  return query<{ name: string }>(
    file,
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
  ).map((row) => row.name);
}

function columns(file: string, table: string): string[] {
  return query<{ name: string }>(file, `SELECT name FROM pragma_table_info('${table}')`).map(
    (row) => row.name,
  );
}

const sorted = (names: string[]) => [...names].sort();

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "weft-prisma-cli-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

// Each CLI run takes a few seconds, several times that on a loaded machine.
const slow = { timeout: 600_000 };

describe("prisma CLI with the repository's config", slow, () => {
  it("validates the schema and reports the engine", async () => {
    const db = path.join(dir, "none.db");
    expect((await prisma(["validate"], { db })).code).toBe(0);
    const version = await prisma(["version"], { db });
    expect(version.code).toBe(0);
    expect(version.output).toMatch(/Schema Engine\s*: schema-engine-cli [0-9a-f]{40}/);
  });

  it("deploys, reports status and finds no drift", async () => {
    const db = path.join(dir, "deploy", "weft.db");
    const missing = await prisma(["migrate", "status"], { db });
    expect(missing.code).toBe(1);
    expect(missing.output).toContain("P1003");

    const deploy = await prisma(["migrate", "deploy"], { db });
    expect(deploy.output).toContain("All migrations have been successfully applied");
    expect(deploy.code).toBe(0);
    expect(tables(db)).toEqual(sorted([...models, "_prisma_migrations"]));
    const applied = query<{ migration_name: string }>(
      db,
      "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL",
    );
    expect(applied.map((row) => row.migration_name).sort()).toEqual(sorted(migrationNames));

    const status = await prisma(["migrate", "status"], { db });
    expect(status.output).toContain("Database schema is up to date");
    expect(status.code).toBe(0);

    const args = ["migrate", "diff", "--from-migrations", "prisma/migrations", "--exit-code"];
    expect((await prisma([...args, "--to-schema", "prisma/schema.prisma"], { db })).code).toBe(0);
    expect((await prisma([...args, "--to-config-datasource"], { db })).code).toBe(0);

    // Someone alters the database behind Migrate's back.
    execute(db, 'ALTER TABLE "Machine" ADD COLUMN "rack" TEXT');
    const drift = await prisma([...args, "--to-config-datasource"], { db });
    expect(drift.code).toBe(2);
    expect(drift.output).toContain("rack");
  });

  it("resets by dropping the tables, then re-applies the migrations", async () => {
    const db = path.join(dir, "reset.db");
    expect((await prisma(["migrate", "deploy"], { db })).code).toBe(0);
    execute(
      db,
      `ALTER TABLE "Machine" ADD COLUMN "rack" TEXT;
       CREATE TABLE "Stray" (id INTEGER);
       INSERT INTO "Image" (id, name, kind, format, size, sha256, path, updatedAt)
         VALUES ('i1', 'host', 'host', 'raw', 1, 'x', 'host.raw', 0);
       INSERT INTO "Machine" (id, imageId, updatedAt) VALUES ('m1', 'i1', 0);`,
    );

    const reset = await prisma(["migrate", "reset", "--force"], { db });
    expect(reset.output).toContain("Database reset successful");
    expect(reset.code).toBe(0);
    expect(tables(db)).toEqual(sorted([...models, "_prisma_migrations"]));
    expect(columns(db, "Machine")).not.toContain("rack");
    expect(query(db, 'SELECT * FROM "Machine"')).toEqual([]);
    expect((await prisma(["migrate", "status"], { db })).code).toBe(0);
  });

  it("pushes the schema to an empty database", async () => {
    const db = path.join(dir, "push.db");
    const push = await prisma(["db", "push"], { db });
    expect(push.code).toBe(0);
    expect(tables(db)).toEqual(sorted(models));
  });

  it("refuses a file that is not a SQLite database with a clear message", async () => {
    const db = path.join(dir, "not-a-database.db");
    const text = "this is a text file, not a database\n".repeat(100);
    writeFileSync(db, text);
    for (const args of [
      ["migrate", "status"],
      ["migrate", "deploy"],
      ["migrate", "diff", "--from-config-datasource", "--to-schema", "prisma/schema.prisma", "--exit-code"],
    ]) {
      const run = await prisma(args, { db });
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.output).toContain("is not a usable SQLite database");
      expect(run.output).not.toMatch(/\n\s+at .+:\d+:\d+/); // no JavaScript stack trace
    }
    expect(readFileSync(db, "utf8")).toBe(text);
  });
});

describe("prisma CLI in a scratch copy of the project", slow, () => {
  let project: string;
  beforeAll(() => {
    project = path.join(dir, "project");
    mkdirSync(project);
    for (const entry of [
      "package.json",
      "prisma.config.ts",
      "prisma/schema.prisma",
      "prisma/migrations",
      "prisma/engine",
    ]) {
      cpSync(path.join(repo, entry), path.join(project, entry), { recursive: true });
    }
    symlinkSync(path.join(repo, "node_modules"), path.join(project, "node_modules"));
  });

  it("creates and applies a new migration after a schema change", async () => {
    const db = path.join(dir, "dev.db");
    expect((await prisma(["migrate", "deploy"], { db, cwd: project })).code).toBe(0);

    const schema = path.join(project, "prisma/schema.prisma");
    const original = readFileSync(schema, "utf8");
    const changed = original.replace(/^(model Machine \{\n)/m, "$1  rack String?\n");
    expect(changed).not.toBe(original);
    writeFileSync(schema, changed);

    const diff = [
      "migrate",
      "diff",
      "--from-migrations",
      "prisma/migrations",
      "--to-schema",
      "prisma/schema.prisma",
    ];
    expect((await prisma([...diff, "--exit-code"], { db, cwd: project })).code).toBe(2);

    const dev = await prisma(["migrate", "dev", "--name", "add_rack"], { db, cwd: project });
    expect(dev.output).toContain("Your database is now in sync with your schema");
    expect(dev.code).toBe(0);
    const created = readdirSync(path.join(project, "prisma/migrations")).filter((name) =>
      name.endsWith("_add_rack"),
    );
    expect(created).toHaveLength(1);
    const script = readFileSync(
      path.join(project, "prisma/migrations", created[0] ?? "", "migration.sql"),
      "utf8",
    );
    expect(script).toContain('ADD COLUMN "rack" TEXT');
    expect(columns(db, "Machine")).toContain("rack");

    expect((await prisma([...diff, "--exit-code"], { db, cwd: project })).code).toBe(0);
    const status = await prisma(["migrate", "status"], { db, cwd: project });
    expect(status.output).toContain(`${migrationNames.length + 1} migrations found`);
    expect(status.code).toBe(0);
  });

  it("generates the client", async () => {
    const run = await prisma(["generate"], { db: path.join(dir, "unused.db"), cwd: project });
    expect(run.code).toBe(0);
    expect(existsSync(path.join(project, "controller/src/store/generated/client.ts"))).toBe(true);
  });
});
