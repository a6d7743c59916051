import { describe, expect, it } from "vitest";
import {
  BOOTP_MIN_SIZE,
  BOOTREPLY,
  clientOptions,
  decode,
  decodeRequest,
  emptyMessage,
  encode,
  MAGIC_COOKIE,
} from "../src/netboot/dhcp/codec.js";
import { DhcpDecodeError, type DhcpDecodeErrorCode } from "../src/netboot/dhcp/errors.js";
import { MessageType, Opt, write } from "../src/netboot/dhcp/options.js";
import { readEncapsulated, readUserClass, writeUserClass } from "../src/netboot/dhcp/options-pxe.js";
import { clientPacket, fixture, fixtureNames } from "./dhcp-helpers.js";

/** A minimal valid DISCOVER with the options area replaced by `opts`. */
function withOptions(opts: number[], total = 300): Buffer {
  const b = Buffer.alloc(Math.max(total, 240 + opts.length));
  b[0] = 1;
  b[1] = 1;
  b[2] = 6;
  b.writeUInt32BE(MAGIC_COOKIE, 236);
  Buffer.from(opts).copy(b, 240);
  return b;
}

function codeOf(f: () => unknown): DhcpDecodeErrorCode | "ok" {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof DhcpDecodeError) return e.code;
    throw e;
  }
}

describe("DHCP codec: malformed input maps to one error code", () => {
  const cases: [string, Buffer, DhcpDecodeErrorCode | "ok"][] = [
    ["empty datagram", Buffer.alloc(0), "TRUNCATED"],
    ["header cut before the cookie", withOptions([53, 1, 1, 255]).subarray(0, 239), "TRUNCATED"],
    ["datagram beyond the size limit", Buffer.alloc(9000, 1), "OVERSIZED"],
    [
      "op 3",
      (() => {
        const b = withOptions([255]);
        b[0] = 3;
        return b;
      })(),
      "BAD_OP",
    ],
    [
      "hlen 17",
      (() => {
        const b = withOptions([255]);
        b[2] = 17;
        return b;
      })(),
      "BAD_HLEN",
    ],
    [
      "wrong magic cookie",
      (() => {
        const b = withOptions([255]);
        b[239] = 0;
        return b;
      })(),
      "BAD_MAGIC",
    ],
    ["option without its length octet", withOptions([53], 241), "OPTION_OVERFLOW"],
    ["option longer than the packet", withOptions([12, 200, 65], 243), "OPTION_OVERFLOW"],
    ["message type of length 2", withOptions([53, 2, 1, 1, 255]), "BAD_OPTION"],
    ["message type 0", withOptions([53, 1, 0, 255]), "BAD_OPTION"],
    ["requested address of 3 octets", withOptions([53, 1, 3, 50, 3, 10, 0, 0, 255]), "BAD_OPTION"],
    ["client identifier of 1 octet", withOptions([53, 1, 1, 61, 1, 1, 255]), "BAD_OPTION"],
    ["odd-length client architecture", withOptions([53, 1, 1, 93, 3, 0, 0, 0, 255]), "BAD_OPTION"],
    ["overload value 4", withOptions([53, 1, 1, 52, 1, 4, 255]), "BAD_OPTION"],
    ["pads then end", withOptions([0, 0, 0, 53, 1, 1, 0, 255]), "ok"],
    ["no end option", withOptions([53, 1, 1], 243), "ok"],
    ["garbage after the end option", withOptions([53, 1, 1, 255, 7, 200, 1]), "ok"],
  ];
  it.each(cases)("%s", (_name, buf, want) => {
    expect(codeOf(() => decodeRequest(buf))).toBe(want);
  });
});

describe("DHCP codec: options", () => {
  it("concatenates a repeated option code (RFC 3396)", () => {
    const msg = decode(withOptions([53, 1, 1, 12, 3, 0x61, 0x62, 0x63, 12, 2, 0x64, 0x65, 255]));
    expect(msg.options.get(Opt.Hostname)?.toString()).toBe("abcde");
  });

  it("reads options from file and sname when option 52 says so, options then file then sname", () => {
    const b = withOptions([53, 1, 1, 52, 1, 3, 12, 2, 0x61, 0x62, 255]);
    Buffer.from([12, 1, 0x63, 255]).copy(b, 108); // file
    Buffer.from([12, 1, 0x64, 60, 4, 0x50, 0x58, 0x45, 0x43, 255]).copy(b, 44); // sname
    const msg = decode(b);
    expect(msg.options.get(Opt.Hostname)?.toString()).toBe("abcd");
    expect(clientOptions(msg.options).vendorClass).toBe("PXEC");
    expect(msg.file).toBe("");
    expect(msg.sname).toBe("");
  });

  it("reads user class in RFC 3004 form and in iPXE's raw form", () => {
    expect(readUserClass(writeUserClass(["a", "bc"]))).toEqual({ classes: ["a", "bc"], form: "rfc3004" });
    expect(readUserClass(Buffer.from("iPXE"))).toEqual({ classes: ["iPXE"], form: "raw" });
  });

  it("reads encapsulated sub-options and gives up on malformed ones", () => {
    expect(readEncapsulated(Buffer.from([0, 1, 1, 9, 255]))?.get(1)).toEqual(Buffer.from([9]));
    expect(readEncapsulated(Buffer.from([1, 5, 9]))).toBeUndefined();
  });

  it("splits options longer than 255 octets and decodes them back whole", () => {
    const m = emptyMessage(BOOTREPLY);
    const long = Buffer.alloc(600, 0x41);
    m.options.set(Opt.BootFile, long);
    m.options.set(Opt.MessageType, write.u8(MessageType.Offer));
    const out = encode(m);
    expect(out[240]).toBe(Opt.MessageType); // option 53 first
    expect(decode(out).options.get(Opt.BootFile)).toEqual(long);
  });

  it("pads short messages to the BOOTP minimum of 300 octets", () => {
    const out = clientPacket({ type: MessageType.Discover, mac: "52:54:00:00:00:01" });
    expect(out.length).toBe(BOOTP_MIN_SIZE);
  });
});

describe("DHCP codec: golden packets from real clients", () => {
  it.each(fixtureNames())("%s decodes, and re-encodes to the same message", (name) => {
    const raw = fixture(name);
    const { msg, opts } = decodeRequest(raw);
    expect(opts.messageType).toBe(MessageType.Discover);
    const again = encode(msg);
    expect(decode(again)).toEqual(msg);
    // Our encoder writes options in the order read, so the options area is byte-identical
    // up to the end option.
    const end = (b: Buffer) => b.subarray(0, 240 + b.subarray(240).indexOf(255) + 1);
    if (msg.options.keys().next().value === Opt.MessageType) expect(end(again)).toEqual(end(raw));
  });

  it("iPXE (BIOS): raw user class, arch 0, UNDI 2.1, SMBIOS UUID as QEMU was given it", () => {
    const { opts } = decodeRequest(fixture("qemu-ipxe-bios-discover.hex"));
    expect(opts.userClass).toEqual({ classes: ["iPXE"], form: "raw" });
    expect(opts.clientArch).toEqual([0]);
    expect(opts.clientNdi).toEqual({ type: 1, major: 2, minor: 1 });
    expect(opts.vendorClass).toBe("PXEClient:Arch:00000:UNDI:002001");
    expect(opts.clientUuid).toBe("8d3c6f1a-2b4e-4c5d-9e6f-0a1b2c3d4e5f");
    expect(opts.ipxe?.size).toBeGreaterThan(0);
  });

  it("OVMF native PXE: arch 7 and no user class", () => {
    const { opts } = decodeRequest(fixture("qemu-ovmf-pxe-discover.hex"));
    expect(opts.clientArch).toEqual([7]);
    expect(opts.userClass).toBeUndefined();
    expect(opts.clientUuid).toBe("8d3c6f1a-2b4e-4c5d-9e6f-0a1b2c3d4e5f");
  });

  it("OVMF HTTP boot: arch 16 and vendor class HTTPClient", () => {
    const { opts } = decodeRequest(fixture("qemu-ovmf-httpboot-discover.hex"));
    expect(opts.clientArch).toEqual([16]);
    expect(opts.vendorClass?.startsWith("HTTPClient")).toBe(true);
  });

  it("udhcpc and dhclient: host name, parameter list, client id", () => {
    expect(decodeRequest(fixture("udhcpc-discover.hex")).opts).toMatchObject({
      hostname: "weftnode",
      clientId: expect.stringMatching(/^01[0-9a-f]{12}$/),
      paramRequestList: expect.arrayContaining([1, 3, 6]),
    });
    expect(decodeRequest(fixture("dhclient-discover.hex")).opts.paramRequestList).toContain(1);
  });
});
