import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { Lifecycle } from "../src/machines/lifecycle.js";
import { STATES, TRANSITIONS, edgeFor, type Trigger } from "../src/machines/states.js";
import { defaultMigrationsDir, openDb, type Db } from "../src/store/db.js";
import { migrateSqlite } from "../src/store/migrate.js";
import { Store } from "../src/store/store.js";

describe("the transition table", () => {
  it("names only known states, and every waiting state has a timeout", () => {
    for (const edges of Object.values(TRANSITIONS)) {
      for (const e of edges) {
        expect(STATES[e.to]).toBeDefined();
        for (const f of e.from) expect(STATES[f]).toBeDefined();
      }
    }
    for (const s of ["enlisting", "deploying", "rebooting", "releasing"] as const) {
      expect(STATES[s].timeoutSeconds).toBeGreaterThan(0);
    }
  });

  it("has at most one edge per (trigger, from)", () => {
    for (const [trigger, edges] of Object.entries(TRANSITIONS)) {
      const froms = edges.flatMap((e) => e.from);
      expect(new Set(froms).size, trigger).toBe(froms.length);
    }
  });

  it.each<[Trigger, string, string | undefined]>([
    ["boot", "discovered", "enlisting"],
    ["enlisted", "enlisting", "ready"],
    ["deploy", "ready", "deploying"],
    ["deploy", "discovered", undefined],
    ["installed", "deploying", "rebooting"],
    ["host-registered", "rebooting", "host-ready"],
    ["release", "host-ready", "releasing"],
    ["wiped", "releasing", "ready"],
    ["fail", "ready", undefined],
    ["timeout", "deploying", "failed"],
    ["retry", "failed", "enlisting"],
  ])("%s from %s goes to %s", (trigger, from, to) => {
    expect(edgeFor(trigger, from as never)?.to).toBe(to);
  });
});

describe("Lifecycle", () => {
  let db: Db;
  let now = new Date("2026-01-01T00:00:00Z");
  let lc: Lifecycle;
  const make = async (state: string) =>
    (
      await db.machine.create({
        data: { provisionState: state, name: `m${Math.random().toString(36).slice(2, 8)}` },
      })
    ).id;

  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "weft-lc-"));
    const url = `file:${path.join(dir, "t.db")}`;
    migrateSqlite(url, defaultMigrationsDir);
    db = openDb(url);
    lc = new Lifecycle(db, new Store(db), pino({ level: "silent" }), { now: () => now });
  });
  afterAll(async () => {
    await db.$disconnect();
  });

  it("records one event per change with who, from, to and why", async () => {
    const id = await make("discovered");
    await lc.fire(id, "boot", { actor: "agent:x" });
    const ev = await db.event.findFirstOrThrow({ where: { subjectId: id } });
    expect(ev).toMatchObject({
      actor: "agent:x",
      fromState: "discovered",
      toState: "enlisting",
      message: "maintenance OS booted",
    });
    const m = await db.machine.findUniqueOrThrow({ where: { id } });
    expect(m.deadlineAt?.getTime()).toBe(now.getTime() + STATES.enlisting.timeoutSeconds! * 1000);
  });

  it("refuses an edge that is not in the table and changes nothing", async () => {
    const id = await make("ready");
    await expect(lc.fire(id, "installed", { actor: "t" })).rejects.toMatchObject({
      code: "INVALID_TRANSITION",
    });
    expect((await db.machine.findUniqueOrThrow({ where: { id } })).provisionState).toBe("ready");
    expect(await db.event.count({ where: { subjectId: id } })).toBe(0);
  });

  it("serialises concurrent changes of one machine: only one of two deploys wins", async () => {
    const id = await make("ready");
    const results = await Promise.allSettled([
      lc.fire(id, "deploy", { actor: "a" }),
      lc.fire(id, "deploy", { actor: "b" }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(await db.event.count({ where: { subjectId: id } })).toBe(1);
  });

  it("moves a machine past its deadline to failed with the reason, and leaves others alone", async () => {
    const late = await make("discovered");
    await lc.fire(late, "boot", { actor: "t" });
    const resting = await make("ready");
    now = new Date(now.getTime() + (STATES.enlisting.timeoutSeconds! + 1) * 1000);
    expect(await lc.sweepTimeouts()).toBeGreaterThanOrEqual(1);
    const m = await db.machine.findUniqueOrThrow({ where: { id: late } });
    expect(m.provisionState).toBe("failed");
    expect(m.lastError).toMatch(/no progress in enlisting/);
    expect((await db.machine.findUniqueOrThrow({ where: { id: resting } })).provisionState).toBe("ready");
  });

  it("takes an operator's deadline over the default, for waiting states only", async () => {
    const short = new Lifecycle(
      db,
      new Store(db),
      pino({ level: "silent" }),
      { now: () => now },
      {
        enlisting: 30,
        ready: 5,
      },
    );
    const id = await make("discovered");
    await short.fire(id, "boot", { actor: "t" });
    expect((await db.machine.findUniqueOrThrow({ where: { id } })).deadlineAt?.getTime()).toBe(
      now.getTime() + 30_000,
    );
    now = new Date(now.getTime() + 31_000);
    await short.sweepTimeouts();
    expect(await db.machine.findUniqueOrThrow({ where: { id } })).toMatchObject({
      provisionState: "failed",
      lastError: expect.stringMatching(/no progress in enlisting for 30 s/) as unknown,
    });
    // ready rests: no deadline, whatever the configuration says.
    const r = await make("enlisting");
    await short.fire(r, "enlisted", { actor: "t" });
    expect(await db.machine.findUniqueOrThrow({ where: { id: r } })).toMatchObject({
      provisionState: "ready",
      deadlineAt: null,
    });
  });

  it("clears last_error when an operator retries", async () => {
    const id = await make("deploying");
    await lc.fire(id, "fail", { actor: "t", reason: "disk gone" });
    expect((await db.machine.findUniqueOrThrow({ where: { id } })).lastError).toBe("disk gone");
    await lc.fire(id, "retry", { actor: "operator:admin" });
    expect((await db.machine.findUniqueOrThrow({ where: { id } })).lastError).toBeNull();
  });
});
