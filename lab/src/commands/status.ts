import type { LabConfig } from "../config.js";
import type { LabSystem } from "../exec.js";
import { status, type LabStatus } from "../lab.js";

export function formatStatus(s: LabStatus): string {
  const out: string[] = [];
  const procs = Object.entries(s.processes)
    .map(([role, p]) => `${role} ${p.pid}${p.running ? "" : " (not running)"}`)
    .join(", ");
  out.push(
    `lab ${s.netns}: ${s.phase}; bridge ${s.bridge}; namespace ${s.namespacePresent ? "present" : "absent"}; accelerator ${s.accel ?? "-"}`,
  );
  out.push(`libvirt ${s.libvirtResponds ? "answers" : "does not answer"} at ${s.libvirtUri}`);
  if (procs !== "") out.push(`processes: ${procs}`);
  if (s.servers.length > 0) {
    out.push("");
    const w = Math.max(4, ...s.servers.map((x) => x.name.length));
    out.push(`${"NAME".padEnd(w)}  POWER    MAC                CONSOLE`);
    for (const x of s.servers) {
      const [first, ...rest] = x.console.length > 0 ? x.console : ["-"];
      out.push(`${x.name.padEnd(w)}  ${x.power.padEnd(7)}  ${x.mac}  ${first}`);
      for (const line of rest) out.push(`${"".padEnd(w)}  ${"".padEnd(7)}  ${"".padEnd(17)}  ${line}`);
    }
  }
  return out.join("\n");
}

export async function runStatus(
  sys: LabSystem,
  config: LabConfig,
  output: "table" | "json",
  lines: number,
): Promise<void> {
  const s = await status(sys, config, lines);
  console.log(output === "json" ? JSON.stringify(s, null, 2) : formatStatus(s));
}
