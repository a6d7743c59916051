// PXE and iPXE options: client system architecture (93), network interface identifier (94)
// and machine identifier (97) from RFC 4578, user class (77) from RFC 3004 with the raw form
// iPXE sends, and iPXE's encapsulated option space (175).
import { DhcpDecodeError } from "./errors.js";

/** RFC 4578 section 2.1 (and the IANA registry): values Weft's boot policy tells apart. */
export const ClientArch = {
  IntelX86Pc: 0,
  EfiIa32: 6,
  EfiBc: 7,
  EfiX64: 9,
  EfiArm64: 11,
  EfiX64Http: 16,
  EfiArm64Http: 19,
} as const;

function bad(code: number, why: string): DhcpDecodeError {
  return new DhcpDecodeError("BAD_OPTION", `option ${code}: ${why}`, code);
}

/** Option 93: a list of 16-bit architecture types (RFC 4578 section 2.1). */
export function readClientArch(v: Buffer): number[] {
  if (v.length === 0 || v.length % 2 !== 0) throw bad(93, `length ${v.length} is not a multiple of 2`);
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(v.readUInt16BE(i));
  return out;
}

export interface ClientNdi {
  /** 1 = UNDI (RFC 4578 section 2.2). */
  type: number;
  major: number;
  minor: number;
}

/** Option 94: type, major, minor (RFC 4578 section 2.2). */
export function readClientNdi(v: Buffer): ClientNdi {
  if (v.length !== 3) throw bad(94, `length ${v.length}, expected 3`);
  return { type: v.readUInt8(0), major: v.readUInt8(1), minor: v.readUInt8(2) };
}

/**
 * Option 97: type 0 then a 16-byte GUID (RFC 4578 section 2.3). PXE firmware sends the
 * SMBIOS byte order, whose first three fields are little-endian (SMBIOS 2.6+ section 7.2.1),
 * so they are swapped back to give the UUID as printed by dmidecode and as set by QEMU's
 * -uuid. A bare 16-byte value (no type octet) is accepted too.
 */
export function readClientUuid(v: Buffer): string {
  let g: Buffer;
  if (v.length === 17 && v[0] === 0) g = v.subarray(1);
  else if (v.length === 16) g = v;
  else throw bad(97, `length ${v.length} or type ${v[0] ?? "none"} is not a type-0 GUID`);
  const hex = (a: number, b: number, rev: boolean): string => {
    const part = Buffer.from(g.subarray(a, b));
    if (rev) part.reverse();
    return part.toString("hex");
  };
  return [hex(0, 4, true), hex(4, 6, true), hex(6, 8, true), hex(8, 10, false), hex(10, 16, false)].join("-");
}

export interface UserClass {
  /** The classes: RFC 3004 instances, or the whole value when it is iPXE's raw string. */
  classes: string[];
  /** rfc3004 when the value parsed as length-prefixed instances, else raw. */
  form: "rfc3004" | "raw";
}

/**
 * Option 77. RFC 3004 section 4 says the value is a list of (length, data) instances with
 * non-zero lengths; iPXE and some others send one bare string ("iPXE"). A value that does not
 * split exactly into instances is taken as one raw string.
 */
export function readUserClass(v: Buffer): UserClass {
  if (v.length === 0) throw bad(77, "empty");
  const classes: string[] = [];
  let i = 0;
  while (i < v.length) {
    const len = v.readUInt8(i);
    if (len === 0 || i + 1 + len > v.length) {
      return { classes: [v.toString("latin1")], form: "raw" };
    }
    classes.push(v.toString("latin1", i + 1, i + 1 + len));
    i += 1 + len;
  }
  return { classes, form: "rfc3004" };
}

/** RFC 3004 form for replies or tests. */
export function writeUserClass(classes: readonly string[]): Buffer {
  return Buffer.concat(
    classes.map((c) => Buffer.concat([Buffer.from([c.length]), Buffer.from(c, "latin1")])),
  );
}

/**
 * An encapsulated option space (option 43 or iPXE's 175): code, length, value, with pad (0)
 * and end (255) as in RFC 2132 section 8.4. Returns undefined when the bytes are not well
 * formed, because vendors put anything there; the raw value is still available.
 */
export function readEncapsulated(v: Buffer): Map<number, Buffer> | undefined {
  const out = new Map<number, Buffer>();
  let i = 0;
  while (i < v.length) {
    const code = v.readUInt8(i);
    if (code === 0) {
      i += 1;
      continue;
    }
    if (code === 255) break;
    if (i + 1 >= v.length) return undefined;
    const len = v.readUInt8(i + 1);
    if (i + 2 + len > v.length) return undefined;
    out.set(code, v.subarray(i + 2, i + 2 + len));
    i += 2 + len;
  }
  return out;
}

export function writeEncapsulated(entries: Iterable<readonly [number, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [code, value] of entries) parts.push(Buffer.from([code, value.length]), value);
  parts.push(Buffer.from([255]));
  return Buffer.concat(parts);
}
