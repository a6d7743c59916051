// The nightly provisioning test with one server, as CI runs it: a blank VM PXE-boots from Weft,
// enlists, gets the host image (the controller is killed and restarted while the image is
// being written), boots it from its disk and registers as a host reachable over TLS; a role of
// two guests runs on it behind a VIP; one release wipes it and it enlists again. Bandwidth caps
// are measured and reported, not asserted here (guests-lab.int.test.ts holds them to 15 %).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { BootTimeline } from "../../lab/src/timeline.js";
import type { RoleReport } from "../lib/guests.js";
import { root } from "../lib/flow.js";
import { expectRoleHolds } from "./role-checks.js";

describe("nightly provisioning", () => {
  it(
    "takes one blank server to host-ready, runs a role on it, and back to ready",
    { timeout: 60 * 60_000 },
    async () => {
      const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "weft-nightly-")), "report.json");
      const code = await new Promise<number | null>((resolve) => {
        const p = spawn("npx", ["tsx", "scripts/nightly.ts", "--servers", "1", "--report", report], {
          cwd: root,
          stdio: "inherit",
        });
        p.on("exit", resolve);
      });
      const r = JSON.parse(fs.readFileSync(report, "utf8")) as {
        error: string | null;
        machines: Record<string, { stages: Record<string, number> }>;
        boot: BootTimeline[];
        faults: { controllerKilled?: { atProgress: number; downSeconds: number } };
        guests: RoleReport | null;
      };
      expect(r.error).toBeNull();
      expect(code).toBe(0);
      const stages = r.machines["srv1"]!.stages;
      for (const s of ["enlisting", "ready", "deploying", "rebooting", "host-ready", "releasing"]) {
        expect(stages[s], s).toBeGreaterThan(0);
      }
      // The boot timeline saw every step of the PXE boot, in order.
      const t = r.boot.find((b) => b.machine === "srv1")!.stages;
      const order = [t.dhcp, t["boot-script"], t.kernel, t.initrd, t["os-dhcp"], t["agent-up"]];
      expect(order.every((x) => x !== undefined && x > 0)).toBe(true);
      expect(order).toEqual([...order].sort((a, b) => a! - b!));
      // The install went on across a controller killed in the middle of the image write.
      expect(r.faults.controllerKilled?.atProgress).toBeGreaterThanOrEqual(0.3);
      expect(r.faults.controllerKilled?.atProgress).toBeLessThan(1);
      expectRoleHolds(r.guests!);
    },
  );
});
