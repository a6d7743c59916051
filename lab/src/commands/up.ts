import type { LabConfig } from "../config.js";
import type { LabSystem } from "../exec.js";
import { up, type UpOptions } from "../lab.js";

export async function runUp(sys: LabSystem, config: LabConfig, opts: UpOptions): Promise<void> {
  const report = await up(sys, config, {
    ...opts,
    onStep: (_step, message) => console.error(`[weft-lab] ${message}`),
  });
  if (report.alreadyUp) {
    console.log(
      `lab ${config.netns} is already up (${report.servers.length} servers, ${report.accel.accel}); nothing to do`,
    );
  } else {
    console.log(
      `lab ${config.netns} is up: ${report.servers.map((s) => `${s.name} ${s.mac}`).join(", ")}; accelerator ${report.accel.accel}`,
    );
    if (report.changed.length > 0) console.error(`[weft-lab] changed: ${report.changed.join("; ")}`);
  }
  if (report.extraServers.length > 0) {
    console.error(
      `[weft-lab] note: the lab also has ${report.extraServers.join(", ")} (more than --servers ${opts.servers}); \`weft-lab down\` removes them`,
    );
  }
  if (!report.controller.started) console.error(`[weft-lab] ${report.controller.reason}`);
}
