import { describe, expect, it } from "vitest";
import { backoffMs, ControllerClient, type Fetch } from "../src/client.js";
import { fakeClock } from "../src/clock.js";

const json = (status: number, body: unknown): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

function scripted(
  ...answers: (Response | Error)[]
): Fetch & { calls: { url: string; init: RequestInit | undefined }[] } {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const f = ((url: string, init?: RequestInit) => {
    calls.push({ url, init });
    const a = answers.shift();
    if (a === undefined) throw new Error("fetch called more often than scripted");
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  }) as Fetch;
  return Object.assign(f, { calls });
}

const netErr = (): Error =>
  new TypeError("fetch failed", {
    cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }),
  });

describe("controller client", () => {
  it("retries network errors and 5xx with growing, jittered backoff from the injected clock", async () => {
    const fetch = scripted(netErr(), json(503, {}), json(200, { commands: [], intervalSeconds: 7 }));
    const clock = fakeClock();
    const c = new ControllerClient({
      baseUrl: "http://ctl/",
      token: "t",
      fetch,
      clock,
      random: () => 1,
      retry: { baseMs: 100 },
    });
    await expect(c.heartbeat({ mode: "maintenance", uptimeSeconds: 1, running: [] })).resolves.toEqual({
      commands: [],
      intervalSeconds: 7,
    });
    expect(clock.sleeps).toEqual([100, 200]);
    expect(fetch.calls[0]?.url).toBe("http://ctl/v1/agent/heartbeat");
    expect((fetch.calls[0]?.init?.headers as Record<string, string>).authorization).toBe("Bearer t");
  });

  it("gives up with CONTROLLER_UNREACHABLE after the last attempt", async () => {
    const fetch = scripted(netErr(), netErr(), netErr());
    const c = new ControllerClient({
      baseUrl: "http://ctl",
      token: "t",
      fetch,
      clock: fakeClock(),
      retry: { attempts: 3 },
    });
    await expect(c.report("c1", { state: "RUNNING" })).rejects.toMatchObject({
      type: "unavailable",
      code: "CONTROLLER_UNREACHABLE",
      message: expect.stringContaining("ECONNREFUSED"),
    });
  });

  it("does not retry a 401 and keeps the controller's error code", async () => {
    const fetch = scripted(
      json(401, { type: "unauthorized", code: "TOKEN_INVALID", message: "unknown agent token" }),
    );
    const c = new ControllerClient({ baseUrl: "http://ctl", token: "t", fetch, clock: fakeClock() });
    await expect(
      c.registerHost({
        capacity: { cpus: 1, cpuMhz: 1, memoryMiB: 1, diskBytes: 0, kvm: false },
        libvirt: { uri: "x", version: null },
        address: null,
      }),
    ).rejects.toMatchObject({
      type: "unauthorized",
      code: "TOKEN_INVALID",
      details: { status: 401 },
    });
    expect(fetch.calls).toHaveLength(1);
  });

  it("maps a non-JSON 4xx to HTTP_<status> and refuses an unexpected response shape", async () => {
    const c = new ControllerClient({
      baseUrl: "http://ctl",
      token: "t",
      fetch: scripted(new Response("nope", { status: 404 })),
      clock: fakeClock(),
    });
    await expect(c.heartbeat({ mode: "host", uptimeSeconds: 1, running: [] })).rejects.toMatchObject({
      code: "HTTP_404",
      type: "invalid_request",
    });
    const c2 = new ControllerClient({
      baseUrl: "http://ctl",
      fetch: scripted(json(200, { machineId: 1 })),
      clock: fakeClock(),
    });
    await expect(c2.enlist({ nonce: "x".repeat(16), inventory: {} as never })).rejects.toMatchObject({
      code: "CONTROLLER_RESPONSE_INVALID",
    });
  });

  it("parses commands one by one so one bad command does not hide the others", async () => {
    const fetch = scripted(
      json(200, {
        intervalSeconds: 3,
        commands: [
          { id: "r1", kind: "reboot", params: {} },
          { id: "x1", kind: "format-everything", params: {} },
        ],
      }),
    );
    const c = new ControllerClient({ baseUrl: "http://ctl", token: "t", fetch, clock: fakeClock() });
    const r = await c.heartbeat({ mode: "maintenance", uptimeSeconds: 1, running: [] });
    expect(r.commands[0]).toEqual({ ok: true, command: { id: "r1", kind: "reboot", params: {} } });
    expect(r.commands[1]).toMatchObject({ ok: false, id: "x1", kind: "format-everything" });
  });

  it("refuses authenticated calls before it has a token", async () => {
    const c = new ControllerClient({ baseUrl: "http://ctl", fetch: scripted(), clock: fakeClock() });
    await expect(c.heartbeat({ mode: "maintenance", uptimeSeconds: 0, running: [] })).rejects.toMatchObject({
      code: "NO_TOKEN",
    });
  });

  it("caps backoff", () => {
    expect(backoffMs(10, { attempts: 20, baseMs: 500, maxMs: 15_000 }, () => 1)).toBe(15_000);
    expect(backoffMs(1, { attempts: 20, baseMs: 500, maxMs: 15_000 }, () => 0)).toBe(250);
  });
});
