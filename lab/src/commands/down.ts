import type { LabConfig } from "../config.js";
import type { LabSystem } from "../exec.js";
import { down } from "../lab.js";

export async function runDown(sys: LabSystem, config: LabConfig, purge: boolean): Promise<void> {
  const report = await down(sys, config, { purge });
  if (report.removed.length === 0) {
    console.log(`no lab ${config.netns} in ${config.stateDir}: nothing to remove`);
    return;
  }
  for (const r of report.removed) console.error(`[weft-lab] removed ${r}`);
  console.log(`lab ${config.netns} is down`);
}
