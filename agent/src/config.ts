// The agent's configuration, from what main.ts read: the kernel command line (maintenance OS:
// `weft.url=... weft.nonce=... weft.mode=maintenance`), the environment the maintenance /init
// exports (WEFT_URL, WEFT_NONCE, WEFT_MODE), command-line flags, and /etc/weft/agent.json in
// an installed host. Nothing in this file reads a file or the environment itself.
import { z } from "zod";
import { AgentError } from "./errors.js";

export interface MaintenanceConfig {
  mode: "maintenance";
  controllerUrl: string;
  nonce: string;
}

export interface HostConfig {
  mode: "host";
  controllerUrl: string;
  machineId: string;
  hostname: string;
  token: string;
}

export type AgentConfig = MaintenanceConfig | HostConfig;

/** `/etc/weft/agent.json`, written by install-host (mode 0600). */
export const HostConfigFile = z
  .object({
    machineId: z.string().min(1),
    hostname: z.string().min(1),
    controllerUrl: z.string().url(),
    token: z.string().min(1),
  })
  .strict();
export type HostConfigFile = z.infer<typeof HostConfigFile>;

/** The `weft.*` words of a kernel command line (other words are ignored). */
export function parseCmdline(text: string): { url?: string; nonce?: string; mode?: string } {
  const out: { url?: string; nonce?: string; mode?: string } = {};
  for (const word of text.trim().split(/\s+/)) {
    if (word === "--") break; // the rest belongs to init
    const eq = word.indexOf("=");
    if (eq < 0) continue;
    const key = word.slice(0, eq);
    const value = word.slice(eq + 1).replace(/^"(.*)"$/, "$1");
    if (key === "weft.url") out.url = value;
    else if (key === "weft.nonce") out.nonce = value;
    else if (key === "weft.mode") out.mode = value;
  }
  return out;
}

export function parseHostConfigFile(text: string, source = "/etc/weft/agent.json"): HostConfigFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AgentError(
      "invalid_request",
      "CONFIG_INVALID",
      `${source} is not JSON: ${(err as Error).message}`,
    );
  }
  const r = HostConfigFile.safeParse(json);
  if (!r.success) {
    throw new AgentError("invalid_request", "CONFIG_INVALID", `${source}: ${z.prettifyError(r.error)}`, {
      details: { issues: r.error.issues },
    });
  }
  return r.data;
}

function checkUrl(url: string, source: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new AgentError("invalid_request", "CONFIG_INVALID", `${source}: not a URL: ${url}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new AgentError(
      "invalid_request",
      "CONFIG_INVALID",
      `${source}: controller URL must be http(s): ${url}`,
    );
  }
  return url.replace(/\/+$/, "");
}

export interface ConfigSources {
  /** Contents of /proc/cmdline, or null when unreadable. */
  cmdline: string | null;
  env: Readonly<Record<string, string | undefined>>;
  /** `--mode=...`, `--url=...`, `--nonce=...` flags. */
  argv: readonly string[];
  /** Contents of /etc/weft/agent.json, or null when absent. */
  hostConfig: string | null;
}

function flag(argv: readonly string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
    if (a === `--${name}`) return argv[i + 1];
  }
  return undefined;
}

/**
 * Decides the mode and its settings. Precedence: flags, then environment, then the kernel
 * command line; without any mode the agent runs in host mode when agent.json exists and in
 * maintenance mode otherwise.
 */
export function resolveConfig(src: ConfigSources): AgentConfig {
  const cmd = src.cmdline === null ? {} : parseCmdline(src.cmdline);
  const nonEmpty = (...vals: (string | undefined)[]): string | undefined =>
    vals.find((v) => v !== undefined && v !== "");
  const mode =
    nonEmpty(flag(src.argv, "mode"), src.env.WEFT_MODE, cmd.mode) ??
    (src.hostConfig !== null ? "host" : "maintenance");
  if (mode === "host") {
    if (src.hostConfig === null) {
      throw new AgentError(
        "invalid_request",
        "CONFIG_MISSING",
        "host mode needs /etc/weft/agent.json, which is absent",
      );
    }
    const file = parseHostConfigFile(src.hostConfig);
    const url = nonEmpty(flag(src.argv, "url"), file.controllerUrl) ?? file.controllerUrl;
    return { mode: "host", ...file, controllerUrl: checkUrl(url, "controller URL") };
  }
  if (mode !== "maintenance") {
    throw new AgentError(
      "invalid_request",
      "CONFIG_INVALID",
      `unknown mode ${JSON.stringify(mode)} (maintenance|host)`,
    );
  }
  const url = nonEmpty(flag(src.argv, "url"), src.env.WEFT_URL, cmd.url);
  const nonce = nonEmpty(flag(src.argv, "nonce"), src.env.WEFT_NONCE, cmd.nonce);
  if (url === undefined) {
    throw new AgentError(
      "invalid_request",
      "CONFIG_MISSING",
      "no controller URL: weft.url= is not on the kernel command line",
    );
  }
  if (nonce === undefined) {
    throw new AgentError(
      "invalid_request",
      "CONFIG_MISSING",
      "no boot nonce: weft.nonce= is not on the kernel command line",
    );
  }
  if (nonce.length < 16 || nonce.length > 128) {
    throw new AgentError(
      "invalid_request",
      "CONFIG_INVALID",
      `boot nonce must be 16..128 characters, got ${nonce.length}`,
    );
  }
  return { mode: "maintenance", controllerUrl: checkUrl(url, "weft.url"), nonce };
}
