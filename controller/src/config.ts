// Controller configuration: flag > WEFT_* environment > config file > default, validated with
// one schema. Only the entry point calls loadConfig; everything else receives a Config.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { z } from "zod";
import { WeftError } from "./errors.js";

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, "expected HOST:PORT")
  .refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, "port out of range");

export const ConfigSchema = z
  .object({
    dataDir: z.string().min(1).default("/var/lib/weft"),
    /** `file:PATH` for SQLite (the default, under dataDir). */
    databaseUrl: z.string().min(1).optional(),
    /** TCP address of the REST API; agents on the provisioning network reach it here. */
    listen: hostPort.default("127.0.0.1:7480"),
    /** Unix socket of the REST API, for operators on the controller's machine. */
    socket: z.string().min(1).default("/run/weft/weft.sock"),
    /** Where the first start writes the admin token (mode 0600). */
    tokenFile: z.string().min(1).optional(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  })
  .strict();

export type Config = Omit<z.infer<typeof ConfigSchema>, "databaseUrl" | "tokenFile"> & {
  databaseUrl: string;
  tokenFile: string;
};

/** Config keys and the environment variable that sets each. */
const envNames: Record<string, keyof z.infer<typeof ConfigSchema>> = {
  WEFT_DATA_DIR: "dataDir",
  WEFT_DATABASE_URL: "databaseUrl",
  WEFT_LISTEN: "listen",
  WEFT_SOCKET: "socket",
  WEFT_TOKEN_FILE: "tokenFile",
  WEFT_LOG_LEVEL: "logLevel",
};

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new WeftError("invalid_request", "CONFIG_UNREADABLE", `cannot read config file ${file}`, {
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (err) {
    throw new WeftError("invalid_request", "CONFIG_SYNTAX", `config file ${file}: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new WeftError("invalid_request", "CONFIG_SYNTAX", `config file ${file} must hold a mapping`);
  }
  return doc as Record<string, unknown>;
}

export function loadConfig(opts: {
  flags: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
  file?: string | undefined;
}): Config {
  const fromFile = opts.file ? readConfigFile(opts.file) : {};
  const fromEnv: Record<string, unknown> = {};
  for (const [name, key] of Object.entries(envNames)) {
    const v = opts.env[name];
    if (v !== undefined && v !== "") fromEnv[key] = v;
  }
  const fromFlags = Object.fromEntries(Object.entries(opts.flags).filter(([, v]) => v !== undefined));
  const parsed = ConfigSchema.safeParse({ ...fromFile, ...fromEnv, ...fromFlags });
  if (!parsed.success) {
    throw new WeftError("invalid_request", "CONFIG_INVALID", "invalid configuration", {
      details: parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    });
  }
  const c = parsed.data;
  const dataDir = path.resolve(c.dataDir);
  return {
    ...c,
    dataDir,
    databaseUrl: c.databaseUrl ?? `file:${path.join(dataDir, "weft.db")}`,
    tokenFile: c.tokenFile ?? path.join(dataDir, "admin.token"),
  };
}
