// The real controller, started from its built entry point on a temporary SQLite file.
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  controllerMain,
  runCli,
  startController,
  tempDir,
  type Running,
} from "./helpers/controller.js";

let ctl: Running;
let token: string;
const eventCount = () => {
  const db = new Database(path.join(ctl.dataDir, "weft.db"), { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM Event").get() as { n: number }).n;
  } finally {
    db.close();
  }
};
const machineCount = () => {
  const db = new Database(path.join(ctl.dataDir, "weft.db"), { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM Machine").get() as { n: number }).n;
  } finally {
    db.close();
  }
};
const cliEnv = () => ({ WEFT_SOCKET: ctl.socket, WEFT_TOKEN_FILE: ctl.tokenFile });

beforeAll(async () => {
  ctl = await startController(tempDir());
  token = ctl.token();
});
afterAll(async () => {
  await ctl?.stop();
});

describe("first start", () => {
  it("writes an admin token readable by its owner only, and stores only its hash", () => {
    const st = fs.statSync(ctl.tokenFile);
    expect(st.mode & 0o777).toBe(0o600);
    expect(token).toMatch(/^weft_[A-Za-z0-9_-]{43}$/);
    const db = new Database(path.join(ctl.dataDir, "weft.db"), { readonly: true });
    const rows = db.prepare("SELECT tokenHash FROM Credential WHERE kind = 'operator'").all() as {
      tokenHash: string;
    }[];
    db.close();
    expect(rows).toEqual([{ tokenHash: crypto.createHash("sha256").update(token).digest("hex") }]);
    expect(ctl.logs.join("\n")).toContain(ctl.tokenFile);
  });

  it("answers health and metrics without a token", async () => {
    expect((await call({ url: ctl.url }, "GET", "/healthz")).json).toEqual({ status: "ok" });
    await call({ url: ctl.url }, "GET", "/healthz");
    const m = await call({ url: ctl.url }, "GET", "/metrics");
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/weft_http_requests_total\{method="GET",route="\/healthz",status="200"\} [1-9]/);
  });
});

describe.each([
  ["TCP", () => ({ url: ctl.url })],
  ["the unix socket", () => ({ socket: ctl.socket })],
])("the API over %s", (_name, where) => {
  it("refuses a request without a token", async () => {
    const r = await call(where(), "GET", "/v1/status");
    expect(r.status).toBe(401);
    expect(r.json).toMatchObject({ type: "unauthorized", code: "TOKEN_MISSING" });
    expect(r.headers["www-authenticate"]).toContain("Bearer");
  });

  it("refuses a wrong token", async () => {
    const r = await call(where(), "GET", "/v1/machines", {
      token: token.slice(0, -1) + (token.endsWith("A") ? "B" : "A"),
    });
    expect(r.status).toBe(401);
    expect(r.json).toMatchObject({ type: "unauthorized", code: "TOKEN_INVALID" });
  });

  it("serves status with the token", async () => {
    const r = await call(where(), "GET", "/v1/status", { token });
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      database: { provider: "sqlite" },
      listeners: [ctl.url, `unix:${ctl.socket}`],
    });
    expect(r.headers["x-request-id"]).toMatch(/[0-9a-f-]{36}/);
  });
});

describe("bad request bodies change nothing", () => {
  const cases: [string, string | object, string, string?][] = [
    ["malformed JSON", '{"name": "srv1", ', "BODY_MALFORMED"],
    ["an unknown field", { name: "srv1", macs: ["52:54:00:00:00:01"], colour: "blue" }, "BODY_INVALID"],
    ["a wrong type", { name: 42, macs: "52:54:00:00:00:01" }, "BODY_INVALID"],
    ["a bad MAC", { name: "srv1", macs: ["52:54:00:00:00"] }, "BODY_INVALID"],
    ["a bad name", { name: "../etc", macs: ["52:54:00:00:00:01"] }, "BODY_INVALID"],
    ["a JSON array", [1, 2], "BODY_INVALID"],
    ["a non-JSON content type", "name=srv1", "CONTENT_TYPE", "application/x-www-form-urlencoded"],
  ];
  it.each(cases)("%s gets a 400 with a clear code", async (_n, body, code, contentType) => {
    const before = [eventCount(), machineCount()];
    const r = await call({ url: ctl.url }, "POST", "/v1/machines", {
      token,
      body,
      ...(contentType ? { contentType } : {}),
    });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ type: "invalid_request", code });
    expect((r.json as { message: string }).message.length).toBeGreaterThan(5);
    expect([eventCount(), machineCount()]).toEqual(before);
  });

  it("a body over 1 MiB is refused", async () => {
    const r = await call({ url: ctl.url }, "POST", "/v1/machines", {
      token,
      body: { name: "x".repeat(1_100_000) },
    });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "BODY_TOO_LARGE" });
  });

  it("an unknown route is a 404 in the same shape", async () => {
    const r = await call({ url: ctl.url }, "GET", "/v1/nothing", { token });
    expect(r.status).toBe(404);
    expect(r.json).toMatchObject({ type: "not_found", code: "ROUTE_NOT_FOUND" });
  });

  it("an unknown query parameter is refused", async () => {
    const r = await call({ url: ctl.url }, "GET", "/v1/events?colour=1", { token });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ code: "QUERY_INVALID" });
  });
});

describe("machines", () => {
  it("registers a machine, records an event, and refuses a duplicate", async () => {
    const before = eventCount();
    const body = {
      name: "srv1",
      macs: ["52:54:00:77:00:01"],
      powerDriver: "libvirt",
      powerParams: { domain: "srv1" },
    };
    const r = await call({ url: ctl.url }, "POST", "/v1/machines", { token, body });
    expect(r.status).toBe(201);
    expect(r.headers.location).toMatch(/^\/v1\/machines\//);
    expect(r.json).toMatchObject({
      name: "srv1",
      state: "discovered",
      nics: [{ mac: "52:54:00:77:00:01", pxe: true }],
    });
    expect(eventCount()).toBe(before + 1);
    const dup = await call({ url: ctl.url }, "POST", "/v1/machines", {
      token,
      body: { ...body, name: "srv9" },
    });
    expect(dup.status).toBe(409);
    expect(dup.json).toMatchObject({ type: "conflict", code: "MAC_IN_USE" });
    expect(eventCount()).toBe(before + 1);
  });

  it("finds a machine by name, id or MAC, and 404s an unknown one", async () => {
    const byName = await call({ socket: ctl.socket }, "GET", "/v1/machines/srv1", { token });
    const id = (byName.json as { id: string }).id;
    const byMac = await call({ socket: ctl.socket }, "GET", "/v1/machines/52:54:00:77:00:01", { token });
    const byId = await call({ socket: ctl.socket }, "GET", `/v1/machines/${id}`, { token });
    expect((byMac.json as { id: string }).id).toBe(id);
    expect((byId.json as { name: string }).name).toBe("srv1");
    expect((byId.json as { events: unknown[] }).events).toHaveLength(1);
    const none = await call({ socket: ctl.socket }, "GET", "/v1/machines/nope", { token });
    expect(none.status).toBe(404);
    expect(none.json).toMatchObject({ code: "MACHINE_NOT_FOUND" });
  });
});

describe("the weft CLI", () => {
  it("lists machines as JSON equal to the API's answer", async () => {
    const r = await runCli(["machines", "list", "-o", "json"], cliEnv());
    expect(r.code).toBe(0);
    const api = await call({ socket: ctl.socket }, "GET", "/v1/machines", { token });
    expect(JSON.parse(r.stdout)).toEqual(api.json);
  });

  it("prints a table by default and YAML on request", async () => {
    const t = await runCli(["machines", "list"], cliEnv());
    expect(t.stdout.split("\n")[0]).toMatch(/^NAME\s+STATE\s+MAC/);
    expect(t.stdout).toMatch(/srv1\s+discovered\s+52:54:00:77:00:01/);
    const y = await runCli(["machines", "show", "srv1", "-o", "yaml"], cliEnv());
    expect(y.code).toBe(0);
    expect(y.stdout).toMatch(/^name: srv1$/m);
  });

  it("shows status and both versions", async () => {
    const s = await runCli(["status", "-o", "json"], cliEnv());
    expect(JSON.parse(s.stdout)).toMatchObject({ machines: { discovered: 1 } });
    const v = await runCli(["version", "-o", "json"], cliEnv());
    expect(JSON.parse(v.stdout)).toMatchObject({
      client: { version: expect.any(String) },
      controller: { version: expect.any(String) },
    });
  });

  it("reaches the controller by URL too", async () => {
    const r = await runCli(["--url", ctl.url, "status", "-o", "json"], { WEFT_TOKEN_FILE: ctl.tokenFile });
    expect(r.code).toBe(0);
  });

  it("exits 1 on a refusal, 2 on a usage error, 3 when the controller is unreachable", async () => {
    const missing = await runCli(["machines", "show", "nope"], cliEnv());
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("MACHINE_NOT_FOUND");
    expect(missing.stdout).toBe("");
    const wrongToken = await runCli(["status"], { WEFT_SOCKET: ctl.socket, WEFT_TOKEN: "weft_wrong" });
    expect(wrongToken.code).toBe(1);
    expect(wrongToken.stderr).toContain("TOKEN_INVALID");
    expect((await runCli(["machines", "frobnicate"], cliEnv())).code).toBe(2);
    expect((await runCli(["machines", "list", "-o", "xml"], cliEnv())).code).toBe(2);
    const away = await runCli(["status"], {
      WEFT_SOCKET: path.join(ctl.dataDir, "none.sock"),
      WEFT_TOKEN: "x",
    });
    expect(away.code).toBe(3);
    expect(away.stderr).toContain("cannot reach the controller");
  });

  it("follows events as they happen", async () => {
    const p = spawn(
      process.execPath,
      [controllerMain.replace("main.js", "cli/main.js"), "events", "--follow", "-o", "json", "--limit", "1"],
      {
        env: { ...process.env, ...cliEnv() },
      },
    );
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 1000));
    await call({ url: ctl.url }, "POST", "/v1/machines", {
      token,
      body: { name: "srv2", macs: ["52:54:00:77:00:02"] },
    });
    const deadline = Date.now() + 10_000;
    while (!out.includes("registered srv2") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    p.kill("SIGINT");
    const lines = out
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { message: string });
    expect(lines.at(-1)!.message).toContain("registered srv2");
  });
});

describe("restart and shutdown", () => {
  it("stops on SIGTERM, removes its socket, and keeps its token and data across a restart", async () => {
    expect(await ctl.stop("SIGTERM")).toBe(0);
    expect(fs.existsSync(ctl.socket)).toBe(false);
    ctl = await startController(ctl.dataDir);
    expect(ctl.token()).toBe(token);
    const r = await call({ socket: ctl.socket }, "GET", "/v1/machines", { token });
    expect((r.json as { items: unknown[] }).items).toHaveLength(2);
    expect(ctl.logs.join("\n")).not.toContain("applied database migrations");
  });

  it("refuses to start on a socket another controller serves", async () => {
    await expect(startController(tempDir(), ["--socket", ctl.socket])).rejects.toThrow(
      /another controller is serving/,
    );
  });
});

describe("databases", () => {
  it("refuses a file that is not a database, with a clear message, and leaves it untouched", async () => {
    const dir = tempDir();
    const file = path.join(dir, "weft.db");
    fs.writeFileSync(file, "this is not a database\n".repeat(100));
    const before = fs.readFileSync(file);
    const err = await startController(dir).then(
      (c) => c.stop().then(() => ""),
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exited with 1/);
    expect(err).toMatch(/not a database/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it("two controllers starting at once on a fresh database both come up, with one admin token and migrations applied once", async () => {
    const dir = tempDir();
    const db = path.join(dir, "weft.db");
    const [a, b] = await Promise.all([
      startController(path.join(dir, "a"), [
        "--database-url",
        `file:${db}`,
        "--token-file",
        path.join(dir, "token"),
      ]),
      startController(path.join(dir, "b"), [
        "--database-url",
        `file:${db}`,
        "--token-file",
        path.join(dir, "token"),
      ]),
    ]);
    try {
      const t = fs.readFileSync(path.join(dir, "token"), "utf8").trim();
      for (const c of [a, b])
        expect((await call({ url: c.url }, "GET", "/v1/status", { token: t })).status).toBe(200);
      const sql = new Database(db, { readonly: true });
      const migs = sql
        .prepare("SELECT migration_name, count(*) AS n FROM _prisma_migrations GROUP BY 1")
        .all() as { n: number }[];
      const creds = sql.prepare("SELECT count(*) AS n FROM Credential WHERE kind = 'operator'").get() as {
        n: number;
      };
      sql.close();
      expect(migs.length).toBeGreaterThan(0);
      expect(migs.every((m) => m.n === 1)).toBe(true);
      expect(creds.n).toBe(1);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
