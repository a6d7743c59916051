// Guests on one installed lab host: the nightly machinery installs a blank server as a host in
// a lab of its own (namespace weft-guestlab), then a role of two guest-base instances is
// deployed and checked from the provisioning network (scripts/lib/guests.ts).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import type { RoleReport } from "../lib/guests.js";
import { root } from "../lib/flow.js";

const CAP_MBIT = 20;

describe("guests on an installed lab host", () => {
  let report: { ok: boolean; error: string | null; guests: RoleReport | null };
  let code: number | null;

  beforeAll(async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "weft-guestlab-")), "report.json");
    code = await new Promise<number | null>((resolve) => {
      const p = spawn(
        "npx",
        [
          "tsx",
          "scripts/nightly.ts",
          "--servers",
          "1",
          "--state-dir",
          "/var/lib/weft-guestlab",
          "--netns",
          "weft-guestlab",
          "--bridge",
          "weftbrg0",
          "--skip-release",
          "--report",
          file,
        ],
        { cwd: root, stdio: "inherit" },
      );
      p.on("exit", resolve);
    });
    report = JSON.parse(fs.readFileSync(file, "utf8")) as typeof report;
  }, 45 * 60_000);

  it("installs the host and runs the role without error", () => {
    expect(report.error).toBeNull();
    expect(code).toBe(0);
    expect(report.guests).not.toBeNull();
  });

  it("boots both guests and the VIP answers from each in turn", () => {
    const g = report.guests!;
    expect(g.guests).toHaveLength(2);
    for (const x of g.guests) {
      expect(x.createToRunningS).toBeGreaterThan(0);
      expect(x.createToServingS).toBeGreaterThan(0);
    }
    const names = new Set(g.guests.map((x) => x.name));
    expect(new Set(g.rotation)).toEqual(names);
    // One host: nftables' numgen hands connections out in strict turn.
    for (let i = 1; i < g.rotation.length; i++) expect(g.rotation[i]).not.toBe(g.rotation[i - 1]);
  });

  it("gives the guest the memory of its spec", () => {
    const m = report.guests!.memory;
    // MemTotal is the RAM less what the kernel keeps for itself (about 50 MiB for Debian's).
    expect(m.memTotalMiB).toBeLessThanOrEqual(m.specMiB);
    expect(m.memTotalMiB).toBeGreaterThan(m.specMiB - 64);
  });

  it("holds a CPU burner at its quota", () => {
    for (const c of report.guests!.cpu) {
      expect(c.measured, c.guest).toBeLessThanOrEqual(c.quota * 1.1);
      expect(c.measured, c.guest).toBeGreaterThan(c.quota * 0.75);
    }
  });

  it("caps bandwidth within 15 % of the spec", () => {
    const b = report.guests!.bandwidth;
    expect(b.capMbit).toBe(CAP_MBIT);
    expect(Math.abs(b.inMbit - CAP_MBIT) / CAP_MBIT).toBeLessThanOrEqual(0.15);
    expect(Math.abs(b.outMbit - CAP_MBIT) / CAP_MBIT).toBeLessThanOrEqual(0.15);
  });

  it("keeps serving from the other guest after one is deleted", () => {
    const g = report.guests!;
    const left = g.guests.find((x) => x.name !== g.afterDelete.deleted)!;
    expect(g.afterDelete.answers).toEqual(g.afterDelete.answers.map(() => left.name));
  });

  it("creates a guest on a host with the base cached, and cleans the role up", () => {
    const c = report.guests!.cachedCreate;
    expect(c.createToRunningS).toBeGreaterThan(0);
    expect(c.createToServingS).toBeGreaterThan(0);
    expect(report.guests!.cleanedUp).toBe(true);
  });
});
