// Boot timelines from the controller's log: for each server, what happened between its last
// power-on and its agent reaching the controller. Everything comes from lines the controller
// writes anyway (pino JSON): the power action, DHCP acks (by MAC), the iPXE script request (MAC),
// HTTP requests by client address (kernel, initrd, enlist). Pure: no files, no clock.

export const BOOT_STAGES = ["dhcp", "boot-script", "kernel", "initrd", "os-dhcp", "agent-up"] as const;
export type BootStage = (typeof BOOT_STAGES)[number];

export interface BootTimeline {
  machine: string;
  machineId: string;
  mac: string | null;
  /** When the power-on returned, ISO 8601. */
  powerOn: string;
  /** Seconds from power-on to each stage seen; a missing stage was not reached (yet). */
  stages: Partial<Record<BootStage, number>>;
}

interface Line {
  t: number;
  msg: string;
  [k: string]: unknown;
}

function parseLines(text: string): Line[] {
  const out: Line[] = [];
  for (const raw of text.split("\n")) {
    if (!raw.startsWith("{")) continue;
    try {
      const o = JSON.parse(raw) as Record<string, unknown>;
      const t = typeof o["time"] === "string" ? Date.parse(o["time"]) : Number.NaN;
      if (Number.isFinite(t) && typeof o["msg"] === "string") out.push({ ...o, t, msg: o["msg"] });
    } catch {
      // A line cut by a crash or interleaved output: not ours to judge here.
    }
  }
  return out;
}

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

/**
 * One timeline per machine that was powered on (`on` or `cycle`) at or after `since` (ms since
 * the epoch), taken from its last such power-on.
 */
export function bootTimelines(logText: string, since = 0): BootTimeline[] {
  const lines = parseLines(logText);
  const lastPowerOn = new Map<string, Line>();
  for (const l of lines) {
    if (l.msg !== "power action" || l.t < since) continue;
    if (l["action"] !== "on" && l["action"] !== "cycle") continue;
    const id = str(l["machineId"]);
    if (id) lastPowerOn.set(id, l);
  }
  const out: BootTimeline[] = [];
  for (const [machineId, p] of lastPowerOn) {
    const after = lines.filter((l) => l.t >= p.t);
    const at = (l: Line | undefined): number | undefined =>
      l === undefined ? undefined : Math.round(l.t - p.t) / 1000;
    const script = after.find((l) => l.msg === "served boot script" && l["machineId"] === machineId);
    const mac = script ? str(script["mac"]) : null;
    const acks = mac ? after.filter((l) => l.msg === "dhcp ack" && l["mac"] === mac) : [];
    const ip = str(acks[0]?.["ip"]);
    const fromIp = (l: Line): boolean => ip !== null && l["remote"] === ip && l.msg === "request";
    const images = after.filter(
      (l) => fromIp(l) && str(l["url"])?.startsWith("/boot/images/") === true && l["method"] === "GET",
    );
    const initrd = images[1];
    const seen: Record<BootStage, number | undefined> = {
      dhcp: at(acks[0]),
      "boot-script": at(script),
      // iPXE fetches the kernel, then the initrd, in the script's order.
      kernel: at(images[0]),
      initrd: at(initrd),
      // The maintenance OS's own DHCP: the first ack after the initrd arrived.
      "os-dhcp": initrd ? at(acks.find((a) => a.t > initrd.t)) : undefined,
      "agent-up": at(
        after.find((l) => fromIp(l) && l["url"] === "/v1/agent/enlist" && Number(l["status"]) < 300),
      ),
    };
    const stages: Partial<Record<BootStage, number>> = {};
    for (const k of BOOT_STAGES) if (seen[k] !== undefined) stages[k] = seen[k];
    out.push({
      machine: str(p["machine"]) ?? machineId,
      machineId,
      mac,
      powerOn: new Date(p.t).toISOString(),
      stages,
    });
  }
  return out.sort((a, b) => a.machine.localeCompare(b.machine, "en", { numeric: true }));
}

/** A fixed-width table, one row per server, seconds since its power-on. */
export function formatTimelines(timelines: readonly BootTimeline[]): string {
  const head = ["server", ...BOOT_STAGES];
  const rows = timelines.map((t) => [
    t.machine,
    ...BOOT_STAGES.map((s) => (t.stages[s] === undefined ? "-" : t.stages[s].toFixed(1))),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: readonly string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [fmt(head), ...rows.map(fmt)].join("\n");
}
