// The entry point as a process: what it prints on the console and how it exits.
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

const agent = async (args: string[], env: Record<string, string>) =>
  execa("node", ["--import", "tsx", MAIN, "--config=/nonexistent/agent.json", ...args], {
    reject: false,
    timeout: 60_000,
    env: { WEFT_MODE: "", WEFT_URL: "", WEFT_NONCE: "", ...env },
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
});
