// The nightly provisioning test with one server, as CI runs it: a blank VM PXE-boots from
// Weft, enlists, gets the host image, boots it from its disk and registers as a host; one
// release wipes it and it enlists again. Guests on the installed host are the subject of
// guests-lab.int.test.ts (the same nightly with its role step), so this run skips them.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "../lib/flow.js";

describe("nightly provisioning", () => {
  it("takes one blank server to host-ready and back to ready", { timeout: 45 * 60_000 }, async () => {
    const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "weft-nightly-")), "report.json");
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn(
        "npx",
        ["tsx", "scripts/nightly.ts", "--servers", "1", "--skip-role", "--report", report],
        {
          cwd: root,
          stdio: "inherit",
        },
      );
      p.on("exit", resolve);
    });
    const r = JSON.parse(fs.readFileSync(report, "utf8")) as {
      ok: boolean;
      error: string | null;
      machines: Record<string, { stages: Record<string, number> }>;
    };
    expect(r.error).toBeNull();
    expect(code).toBe(0);
    const stages = r.machines["srv1"]!.stages;
    for (const s of ["enlisting", "ready", "deploying", "rebooting", "host-ready", "releasing"]) {
      expect(stages[s], s).toBeGreaterThan(0);
    }
  });
});
