import { describe, expect, it } from "vitest";
import { parseCmdline, resolveConfig } from "../src/config.js";

const NONCE = "n0nce-0123456789abcdef";
const cmdline = `BOOT_IMAGE=vmlinuz console=ttyS0 weft.url=http://10.0.0.1:8080/ weft.nonce=${NONCE} weft.mode=maintenance quiet`;
const hostJson = JSON.stringify({
  machineId: "m-1",
  hostname: "host-1",
  controllerUrl: "http://10.0.0.1:8080",
  token: "secret",
});

describe("configuration", () => {
  it("parses weft.* words of the kernel command line and stops at --", () => {
    expect(parseCmdline(cmdline)).toEqual({
      url: "http://10.0.0.1:8080/",
      nonce: NONCE,
      mode: "maintenance",
    });
    expect(parseCmdline("quiet -- weft.url=http://x")).toEqual({});
  });

  it("builds a maintenance configuration from the command line", () => {
    expect(resolveConfig({ cmdline, env: {}, argv: [], hostConfig: null })).toEqual({
      mode: "maintenance",
      controllerUrl: "http://10.0.0.1:8080",
      nonce: NONCE,
    });
  });

  it("prefers flags over the environment over the command line", () => {
    const env = { WEFT_URL: "http://env:1", WEFT_NONCE: `${NONCE}-env` };
    expect(resolveConfig({ cmdline, env, argv: [], hostConfig: null })).toMatchObject({
      controllerUrl: "http://env:1",
      nonce: `${NONCE}-env`,
    });
    expect(resolveConfig({ cmdline, env, argv: ["--url=http://flag:2"], hostConfig: null })).toMatchObject({
      controllerUrl: "http://flag:2",
    });
  });

  it("chooses host mode when agent.json exists and no mode is named", () => {
    expect(resolveConfig({ cmdline: "quiet", env: {}, argv: [], hostConfig: hostJson })).toEqual({
      mode: "host",
      machineId: "m-1",
      hostname: "host-1",
      controllerUrl: "http://10.0.0.1:8080",
      token: "secret",
    });
  });

  it.each([
    ["no URL", { cmdline: "quiet", env: {}, argv: [], hostConfig: null }, "CONFIG_MISSING"],
    ["no nonce", { cmdline: "weft.url=http://x", env: {}, argv: [], hostConfig: null }, "CONFIG_MISSING"],
    [
      "short nonce",
      { cmdline: "weft.url=http://x weft.nonce=abc", env: {}, argv: [], hostConfig: null },
      "CONFIG_INVALID",
    ],
    [
      "bad URL",
      { cmdline: `weft.url=ftp://x weft.nonce=${NONCE}`, env: {}, argv: [], hostConfig: null },
      "CONFIG_INVALID",
    ],
    ["unknown mode", { cmdline: "weft.mode=guest", env: {}, argv: [], hostConfig: null }, "CONFIG_INVALID"],
    [
      "host mode without agent.json",
      { cmdline: "", env: { WEFT_MODE: "host" }, argv: [], hostConfig: null },
      "CONFIG_MISSING",
    ],
    ["agent.json not JSON", { cmdline: "", env: {}, argv: [], hostConfig: "{" }, "CONFIG_INVALID"],
    [
      "agent.json without token",
      { cmdline: "", env: {}, argv: [], hostConfig: '{"machineId":"m"}' },
      "CONFIG_INVALID",
    ],
  ])("refuses %s", (_name, src, code) => {
    expect(() => resolveConfig(src)).toThrow(expect.objectContaining({ code }));
  });
});
