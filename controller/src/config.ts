// Controller configuration: flag > WEFT_* environment > config file > default, validated with
// one schema. Only the entry point calls loadConfig; everything else receives a Config.
import fs from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { KernelArg } from "@weft/wire";
import { z } from "zod";
import { WeftError } from "./errors.js";

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, "expected HOST:PORT")
  .refine((s) => Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, "port out of range");

/** Kernel arguments as one line: words (KernelArg) separated by single spaces, or nothing. */
const kernelArgs = z
  .string()
  .max(4096)
  .refine(
    (v) => v === "" || v.split(" ").every((w) => KernelArg.safeParse(w).success),
    "kernel arguments are words of letters, digits and _.,:=/+@- separated by single spaces",
  );

/** The states a machine waits in, each with a deadline (machines/states.ts). */
const WAITING_STATES = ["enlisting", "deploying", "rebooting", "releasing"] as const;

/** `rebooting=900,deploying=2400` (flag or environment) or a mapping (config file). */
const stateTimeouts = z.preprocess(
  (v) =>
    typeof v === "string"
      ? Object.fromEntries(
          v
            .split(",")
            .filter((p) => p.trim() !== "")
            .map((p) => {
              const i = p.indexOf("=");
              return i < 0 ? [p.trim(), ""] : [p.slice(0, i).trim(), p.slice(i + 1).trim()];
            }),
        )
      : v,
  z.partialRecord(
    z.enum(WAITING_STATES),
    z.coerce
      .number()
      .int()
      .min(1)
      .max(7 * 86400),
  ),
);

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
    /** Where imported images are kept (default <dataDir>/images). */
    imagesDir: z.string().min(1).optional(),
    /** The URL machines use to reach this controller (boot scripts, images, agent API). */
    bootUrl: z.string().url().optional(),
    /** Debian's iPXE binaries (undionly.kpxe, ipxe.efi, snponly.efi). */
    ipxeDir: z.string().min(1).default("/usr/lib/ipxe"),
    /**
     * The controller's address on the provisioning network. Netboot (DHCP, TFTP) runs only
     * when it is set: the embedded default answers no one's DHCP.
     */
    netbootAddress: z.ipv4().optional(),
    /** full: addresses and boot options; proxy: boot options beside another DHCP server. */
    dhcpMode: z.enum(["full", "proxy", "off"]).default("full"),
    /** The provisioning subnet, e.g. 10.77.0.0/24. */
    dhcpSubnet: z.cidrv4().optional(),
    /** Dynamic pool, FIRST-LAST. */
    dhcpRange: z
      .string()
      .regex(/^\d+\.\d+\.\d+\.\d+-\d+\.\d+\.\d+\.\d+$/, "expected FIRST-LAST addresses")
      .optional(),
    dhcpRouter: z.ipv4().optional(),
    dhcpLeaseSeconds: z.coerce.number().int().min(60).max(604800).default(3600),
    dhcpPort: z.coerce.number().int().min(1).max(65535).default(67),
    tftpPort: z.coerce.number().int().min(0).max(65535).default(69),
    /** Kernel arguments for the maintenance OS besides Weft's own. */
    maintenanceCmdline: kernelArgs.default("console=ttyS0,115200 quiet"),
    /** Kernel arguments added to the installed host's own (its boot loader's APPEND lines). */
    hostKernelArgs: kernelArgs.default(""),
    /** Seconds a machine may wait in a state before it fails, overriding the defaults. */
    stateTimeouts: stateTimeouts.default({}),
  })
  .strict();

export type Config = Omit<
  z.infer<typeof ConfigSchema>,
  "databaseUrl" | "tokenFile" | "imagesDir" | "bootUrl"
> & {
  databaseUrl: string;
  tokenFile: string;
  imagesDir: string;
  bootUrl: string;
};

/** Config keys and the environment variable that sets each. */
const envNames: Record<string, keyof z.infer<typeof ConfigSchema>> = {
  WEFT_DATA_DIR: "dataDir",
  WEFT_DATABASE_URL: "databaseUrl",
  WEFT_LISTEN: "listen",
  WEFT_SOCKET: "socket",
  WEFT_TOKEN_FILE: "tokenFile",
  WEFT_LOG_LEVEL: "logLevel",
  WEFT_IMAGES_DIR: "imagesDir",
  WEFT_BOOT_URL: "bootUrl",
  WEFT_IPXE_DIR: "ipxeDir",
  WEFT_NETBOOT_ADDRESS: "netbootAddress",
  WEFT_DHCP_MODE: "dhcpMode",
  WEFT_DHCP_SUBNET: "dhcpSubnet",
  WEFT_DHCP_RANGE: "dhcpRange",
  WEFT_DHCP_ROUTER: "dhcpRouter",
  WEFT_DHCP_LEASE_SECONDS: "dhcpLeaseSeconds",
  WEFT_DHCP_PORT: "dhcpPort",
  WEFT_TFTP_PORT: "tftpPort",
  WEFT_STATE_TIMEOUTS: "stateTimeouts",
  WEFT_MAINTENANCE_CMDLINE: "maintenanceCmdline",
  WEFT_HOST_KERNEL_ARGS: "hostKernelArgs",
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
  if (c.netbootAddress && c.dhcpMode === "full" && (!c.dhcpSubnet || !c.dhcpRange)) {
    throw new WeftError("invalid_request", "CONFIG_INVALID", "full DHCP needs dhcpSubnet and dhcpRange", {
      details: [{ path: "dhcpRange", message: "required with dhcpMode full" }],
    });
  }
  const dataDir = path.resolve(c.dataDir);
  return {
    ...c,
    dataDir,
    databaseUrl: c.databaseUrl ?? `file:${path.join(dataDir, "weft.db")}`,
    tokenFile: c.tokenFile ?? path.join(dataDir, "admin.token"),
    imagesDir: path.resolve(c.imagesDir ?? path.join(dataDir, "images")),
    // Machines reach the API on the provisioning address, at the API's port.
    bootUrl: (
      c.bootUrl ??
      (c.netbootAddress
        ? `http://${c.netbootAddress}:${c.listen.slice(c.listen.lastIndexOf(":") + 1)}`
        : `http://${c.listen}`)
    ).replace(/\/+$/, ""),
  };
}
