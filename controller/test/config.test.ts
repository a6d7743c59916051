import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { WeftError } from "../src/errors.js";

const file = (text: string) => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "weft-cfg-")), "weft.yaml");
  fs.writeFileSync(f, text);
  return f;
};

describe("configuration precedence", () => {
  it("uses the defaults when nothing is given", () => {
    const c = loadConfig({ flags: {}, env: {} });
    expect(c).toMatchObject({
      dataDir: "/var/lib/weft",
      databaseUrl: "file:/var/lib/weft/weft.db",
      listen: "127.0.0.1:7480",
      socket: "/run/weft/weft.sock",
      tokenFile: "/var/lib/weft/admin.token",
      logLevel: "info",
    });
  });

  it("takes a flag over the environment over the file over the default", () => {
    const f = file("listen: 0.0.0.0:1\nsocket: /f.sock\nlogLevel: warn\ndataDir: /from-file\n");
    const c = loadConfig({
      file: f,
      env: { WEFT_LISTEN: "0.0.0.0:2", WEFT_SOCKET: "/env.sock" },
      flags: { listen: "0.0.0.0:3", socket: undefined },
    });
    expect(c.listen).toBe("0.0.0.0:3");
    expect(c.socket).toBe("/env.sock");
    expect(c.logLevel).toBe("warn");
    expect(c.databaseUrl).toBe("file:/from-file/weft.db");
  });

  it.each([
    ["an unknown key in the file", { file: "colour: blue\n" }, "CONFIG_INVALID"],
    ["a bad listen address", { flags: { listen: "nowhere" } }, "CONFIG_INVALID"],
    ["a port out of range", { env: { WEFT_LISTEN: "127.0.0.1:70000" } }, "CONFIG_INVALID"],
    ["a bad log level", { env: { WEFT_LOG_LEVEL: "loud" } }, "CONFIG_INVALID"],
    ["a file that is not a mapping", { file: "- a\n- b\n" }, "CONFIG_SYNTAX"],
    ["a file with bad YAML", { file: "a: [\n" }, "CONFIG_SYNTAX"],
    ["a deadline for a state that has none", { flags: { stateTimeouts: "ready=60" } }, "CONFIG_INVALID"],
    ["a deadline that is not a number", { env: { WEFT_STATE_TIMEOUTS: "rebooting=soon" } }, "CONFIG_INVALID"],
    ["a zero deadline", { file: "stateTimeouts:\n  deploying: 0\n" }, "CONFIG_INVALID"],
  ])("refuses %s", (_name, input, code) => {
    const run = () =>
      loadConfig({
        flags: (input as { flags?: Record<string, unknown> }).flags ?? {},
        env: (input as { env?: NodeJS.ProcessEnv }).env ?? {},
        file:
          (input as { file?: string }).file === undefined
            ? undefined
            : file((input as { file: string }).file),
      });
    expect(run).toThrow(WeftError);
    try {
      run();
    } catch (e) {
      expect((e as WeftError).code).toBe(code);
    }
  });

  it("reads state deadlines from a flag, the environment or the file", () => {
    expect(loadConfig({ flags: {}, env: {} }).stateTimeouts).toEqual({});
    expect(
      loadConfig({ flags: { stateTimeouts: "rebooting=900, deploying=2400" }, env: {} }).stateTimeouts,
    ).toEqual({ rebooting: 900, deploying: 2400 });
    expect(loadConfig({ flags: {}, env: { WEFT_STATE_TIMEOUTS: "enlisting=30" } }).stateTimeouts).toEqual({
      enlisting: 30,
    });
    expect(
      loadConfig({ flags: {}, env: {}, file: file("stateTimeouts:\n  releasing: 90\n") }).stateTimeouts,
    ).toEqual({ releasing: 90 });
  });

  it("takes kernel arguments as words, and refuses what could leave the command line", () => {
    expect(loadConfig({ flags: {}, env: {} }).hostKernelArgs).toBe("");
    const c = loadConfig({
      flags: { hostKernelArgs: "tsc=reliable" },
      env: { WEFT_MAINTENANCE_CMDLINE: "console=ttyS0,115200 quiet tsc=reliable" },
    });
    expect(c.hostKernelArgs).toBe("tsc=reliable");
    expect(c.maintenanceCmdline).toBe("console=ttyS0,115200 quiet tsc=reliable");
    for (const bad of ["quiet\nboot http://elsewhere/x", "a  b", " quiet", "$(id)"]) {
      expect(() => loadConfig({ flags: { maintenanceCmdline: bad }, env: {} }), bad).toThrow(
        /invalid configuration/,
      );
      expect(() => loadConfig({ flags: { hostKernelArgs: bad }, env: {} }), bad).toThrow(
        /invalid configuration/,
      );
    }
  });

  it("refuses a config file that does not exist", () => {
    expect(() => loadConfig({ flags: {}, env: {}, file: "/nonexistent/weft.yaml" })).toThrow(
      /cannot read config file/,
    );
  });
});
