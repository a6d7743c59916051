// Shared by the DHCP tests: golden packets, a client-side message builder, a logger that
// keeps its lines, and a migrated temp SQLite store.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BOOTREQUEST, emptyMessage, encode, type DhcpMessage } from "../src/netboot/dhcp/codec.js";
import { parseMac } from "../src/netboot/dhcp/ip.js";
import { Opt, write } from "../src/netboot/dhcp/options.js";
import type { DhcpLogger } from "../src/netboot/dhcp/server.js";
import { tempDb as freshDb, type TempDb } from "./helpers/db.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const fixtureDir = path.join(here, "fixtures", "dhcp");

export function fixture(name: string): Buffer {
  return Buffer.from(fs.readFileSync(path.join(fixtureDir, name), "utf8").trim(), "hex");
}

export function fixtureNames(): string[] {
  return fs
    .readdirSync(fixtureDir)
    .filter((f) => f.endsWith(".hex"))
    .sort();
}

export interface ClientMessage {
  type: number;
  mac: string;
  xid?: number;
  ciaddr?: string;
  giaddr?: string;
  flags?: number;
  options?: [number, Buffer][];
}

/** A BOOTREQUEST as a client would send it. */
export function clientMessage(c: ClientMessage): DhcpMessage {
  const m = emptyMessage(BOOTREQUEST);
  m.xid = c.xid ?? 0x1234abcd;
  m.flags = c.flags ?? 0;
  if (c.ciaddr) m.ciaddr = c.ciaddr;
  if (c.giaddr) m.giaddr = c.giaddr;
  parseMac(c.mac).copy(m.chaddr);
  m.options.set(Opt.MessageType, write.u8(c.type));
  for (const [code, v] of c.options ?? []) m.options.set(code, v);
  return m;
}

export function clientPacket(c: ClientMessage): Buffer {
  return encode(clientMessage(c));
}

export interface LogLine {
  level: string;
  msg: string | undefined;
  [k: string]: unknown;
}

/** A pino-shaped logger that records every line with its bindings. */
export function recordingLogger(
  lines: LogLine[] = [],
  bindings: Record<string, unknown> = {},
): DhcpLogger & {
  lines: LogLine[];
} {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ ...bindings, ...obj, level, msg });
    };
  return {
    lines,
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    debug: at("debug"),
    child: (b) => recordingLogger(lines, { ...bindings, ...b }),
  };
}

export function tempDb(): TempDb {
  return freshDb("weft-dhcp-");
}
