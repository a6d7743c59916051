// What a role on an installed lab host must show (the nightly's role step, scripts/lib/guests.ts):
// both guests serve, the VIP hands connections out in turn, memory and CPU caps hold, and a
// deleted guest leaves the other serving. Shared by the CI nightly test and the guests lab test.
import { expect } from "vitest";
import type { RoleReport } from "../lib/guests.js";

export function expectRoleHolds(g: RoleReport): void {
  expect(g.guests).toHaveLength(2);
  for (const x of g.guests) {
    expect(x.createToRunningS, x.name).toBeGreaterThan(0);
    expect(x.createToServingS, x.name).toBeGreaterThan(0);
  }
  expect(new Set(g.rotation)).toEqual(new Set(g.guests.map((x) => x.name)));
  // One host: nftables' numgen hands connections out in strict turn.
  for (let i = 1; i < g.rotation.length; i++) expect(g.rotation[i]).not.toBe(g.rotation[i - 1]);
  // MemTotal is the RAM less what the kernel keeps for itself (about 50 MiB for Debian's).
  expect(g.memory.memTotalMiB).toBeLessThanOrEqual(g.memory.specMiB);
  expect(g.memory.memTotalMiB).toBeGreaterThan(g.memory.specMiB - 64);
  for (const c of g.cpu) {
    expect(c.measured, c.guest).toBeLessThanOrEqual(c.quota * 1.1);
    expect(c.measured, c.guest).toBeGreaterThan(c.quota * 0.75);
  }
  const left = g.guests.find((x) => x.name !== g.afterDelete.deleted)!;
  expect(g.afterDelete.answers.length).toBeGreaterThan(0);
  expect(g.afterDelete.answers).toEqual(g.afterDelete.answers.map(() => left.name));
  expect(g.cachedCreate.createToRunningS).toBeGreaterThan(0);
  expect(g.cachedCreate.createToServingS).toBeGreaterThan(0);
  expect(g.cleanedUp).toBe(true);
}
