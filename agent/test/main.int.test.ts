// The entry point as a process: what it prints on the console and how it exits.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterEach, describe, expect, it } from "vitest";
import { fakeController, type FakeController } from "./helpers/fake-controller.js";
import { cleanup, tempDir } from "./helpers/tmp.js";

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));
let ctl: FakeController | undefined;
let dir: string | undefined;
afterEach(async () => {
  await ctl?.close();
  if (dir) await cleanup(dir);
  ctl = dir = undefined;
});

const agent = (args: string[], env: Record<string, string>) =>
  execa("node", ["--import", "tsx", MAIN, "--config=/nonexistent/agent.json", ...args], {
    reject: false,
    timeout: 60_000,
    env: { WEFT_MODE: "", WEFT_URL: "", WEFT_NONCE: "", WEFT_CONFIG_DIR: "", ...env },
  });

describe("weft-agent entry point", () => {
  it("prints `starting` first, then its mode, and exits 3 when the controller refuses the nonce", async () => {
    ctl = await fakeController({ nonce: "the-right-nonce-0123456789" });
    dir = await tempDir();
    const r = await agent([`--state-dir=${dir}`], {
      WEFT_MODE: "maintenance",
      WEFT_URL: ctl.url,
      WEFT_NONCE: "a-wrong-nonce-0123456789",
    });
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("weft-agent: starting");
    expect(lines[1]).toBe(`weft-agent: mode=maintenance controller=${ctl.url}`);
    expect(lines.at(-1)).toMatch(/^weft-agent: FATAL NONCE_REFUSED: the controller refused the boot nonce/);
    expect(r.exitCode).toBe(3);
    expect(ctl.enlists).toHaveLength(1);
  });

  it("exits 2 with a clear line when there is no controller URL", async () => {
    const r = await agent([], { WEFT_MODE: "maintenance" });
    expect(r.stdout.split("\n")).toEqual([
      "weft-agent: starting",
      "weft-agent: FATAL CONFIG_MISSING: no controller URL: weft.url= is not on the kernel command line",
    ]);
    expect(r.exitCode).toBe(2);
  });

  it("host mode: registers with the token from agent.json, heartbeats, and exits 0 on SIGTERM", async () => {
    ctl = await fakeController({
      nonce: "unused-nonce-0123456789",
      token: "host-token-1",
      intervalSeconds: 1,
    });
    dir = await tempDir();
    const cfg = join(dir, "agent.json");
    await writeFile(
      cfg,
      JSON.stringify({ machineId: "m-7", hostname: "h7", controllerUrl: ctl.url, token: "host-token-1" }),
      { mode: 0o600 },
    );
    const proc = execa("node", ["--import", "tsx", MAIN, `--config=${cfg}`], {
      reject: false,
      timeout: 60_000,
      env: { WEFT_MODE: "host", WEFT_URL: "", WEFT_NONCE: "" },
    });
    const c = ctl;
    const deadline = Date.now() + 45_000;
    while (c.heartbeats.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    proc.kill("SIGTERM");
    const r = await proc;
    const lines = r.stdout.split("\n");
    expect(lines[0]).toBe("weft-agent: starting");
    expect(lines[1]).toBe(`weft-agent: mode=host controller=${c.url}`);
    expect(lines).toContain("weft-agent: SIGTERM: stopping");
    expect(r.exitCode).toBe(0);
    expect(c.registrations).toHaveLength(1);
    expect(c.registrations[0]?.libvirt.uri).toBe("qemu:///system");
    expect(c.heartbeats[0]?.mode).toBe("host");
  });
});
