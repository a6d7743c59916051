import { describe, expect, it } from "vitest";
import { bootTimelines, formatTimelines } from "../src/timeline.js";

const t0 = Date.parse("2026-11-25T22:00:00.000Z");
const line = (s: number, msg: string, o: Record<string, unknown> = {}): string =>
  JSON.stringify({
    level: 30,
    time: new Date(t0 + s * 1000).toISOString(),
    svc: "weft-controller",
    ...o,
    msg,
  });
const req = (s: number, method: string, url: string, remote: string, status = 200): string =>
  line(s, "request", { method, url, remote, status });

/** One server's boot as the controller logs it, shifted by `d` seconds. */
function boot(d: number, n: number): string[] {
  const mac = `52:54:00:77:00:0${n}`;
  const ip = `10.77.0.${99 + n}`;
  const id = `m${n}`;
  return [
    line(d, "power action", { machineId: id, machine: `srv${n}`, action: "on" }),
    line(d + 2.5, "dhcp ack", { mac, ip, type: "REQUEST" }),
    line(d + 6.6, "served boot script", { mac, machineId: id, plan: "maintenance" }),
    req(d + 7.1, "GET", "/boot/images/maintenance-kernel", ip),
    req(d + 11.1, "GET", "/boot/images/maintenance-initrd", ip),
    line(d + 27.7, "dhcp ack", { mac, ip, type: "REQUEST" }),
    req(d + 30, "POST", "/v1/agent/enlist", ip, 401),
    req(d + 36.4, "POST", "/v1/agent/enlist", ip),
  ];
}

describe("boot timelines from the controller log", () => {
  it("measures each stage from the server's last power-on, by MAC and by address", () => {
    const log = [
      ...boot(0, 1),
      "not json",
      '{"time":"broken',
      ...boot(1, 2),
      // srv1 again, later: only this boot counts.
      ...boot(100, 1).slice(0, 4),
    ].join("\n");
    const [srv1, srv2] = bootTimelines(log);
    expect(srv2).toMatchObject({ machine: "srv2", mac: "52:54:00:77:00:02" });
    expect(srv2?.stages).toEqual({
      dhcp: 2.5,
      "boot-script": 6.6,
      kernel: 7.1,
      initrd: 11.1,
      "os-dhcp": 27.7,
      "agent-up": 36.4,
    });
    expect(srv1?.powerOn).toBe(new Date(t0 + 100_000).toISOString());
    expect(srv1?.stages).toEqual({ dhcp: 2.5, "boot-script": 6.6, kernel: 7.1 });
  });

  it("ignores power-offs and boots before `since`, and prints a table", () => {
    const log = [
      ...boot(0, 1),
      line(50, "power action", { machineId: "m1", machine: "srv1", action: "off" }),
    ].join("\n");
    expect(bootTimelines(log, t0 + 1000)).toEqual([]);
    const [t] = bootTimelines(log);
    expect(t?.stages["agent-up"]).toBe(36.4);
    const table = formatTimelines(bootTimelines(log)).split("\n");
    expect(table[0]).toMatch(/^server\s+dhcp\s+boot-script\s+kernel\s+initrd\s+os-dhcp\s+agent-up$/);
    expect(table[1]).toMatch(/^srv1\s+2\.5\s+6\.6\s+7\.1\s+11\.1\s+27\.7\s+36\.4$/);
  });
});
