import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { describe, expect, it } from "vitest";
import {
  decodePacket,
  encodePacket,
  ErrorCode,
  Opcode,
  TftpPacketError,
} from "../src/netboot/tftp/packet.js";
import type { TftpPacket } from "../src/netboot/tftp/packet.js";
import { tftpFuzzInputs, tftpFuzzSeeds } from "./tftp-fuzz-inputs.js";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/tftp/${name}`, import.meta.url));
const bytes = (...parts: (number[] | string)[]) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))));

describe("tftp packet codec", () => {
  const roundTrips: [string, TftpPacket][] = [
    ["RRQ without options", { op: Opcode.RRQ, filename: "pxelinux.0", mode: "octet", options: [] }],
    [
      "RRQ with options",
      {
        op: Opcode.RRQ,
        filename: "boot/ipxe.efi",
        mode: "octet",
        options: [
          ["blksize", "1468"],
          ["tsize", "0"],
          ["windowsize", "16"],
        ],
      },
    ],
    ["WRQ", { op: Opcode.WRQ, filename: "upload", mode: "netascii", options: [] }],
    [
      "RRQ with an empty option value",
      { op: Opcode.RRQ, filename: "f", mode: "octet", options: [["x", ""]] },
    ],
    ["RRQ with a UTF-8 name", { op: Opcode.RRQ, filename: "böot/é.efi", mode: "octet", options: [] }],
    ["DATA", { op: Opcode.DATA, block: 1, data: new Uint8Array([1, 2, 3]) }],
    ["empty DATA", { op: Opcode.DATA, block: 65535, data: new Uint8Array(0) }],
    ["ACK 0", { op: Opcode.ACK, block: 0 }],
    ["ACK 65535", { op: Opcode.ACK, block: 65535 }],
    ["ERROR", { op: Opcode.ERROR, code: ErrorCode.FILE_NOT_FOUND, message: "file not found" }],
    ["ERROR with empty message", { op: Opcode.ERROR, code: 8, message: "" }],
    ["OACK", { op: Opcode.OACK, options: [["blksize", "1468"]] }],
  ];

  it.each(roundTrips)("round-trips %s", (_name, packet) => {
    const decoded = decodePacket(encodePacket(packet));
    if (packet.op === Opcode.DATA && decoded.op === Opcode.DATA) {
      expect(decoded.block).toBe(packet.block);
      expect(Buffer.from(decoded.data)).toEqual(Buffer.from(packet.data));
    } else {
      expect(decoded).toEqual(packet);
    }
  });

  it("encodes an ACK as exactly 4 bytes in network order", () => {
    expect(encodePacket({ op: Opcode.ACK, block: 0x1234 })).toEqual(Buffer.from([0, 4, 0x12, 0x34]));
  });

  it("decodes the read request curl sends", () => {
    expect(decodePacket(fixture("rrq-curl.bin"))).toEqual({
      op: Opcode.RRQ,
      filename: "pxelinux.0",
      mode: "octet",
      options: [
        ["tsize", "0"],
        ["blksize", "1468"],
        ["timeout", "6"],
      ],
    });
  });

  it("decodes the read request atftp sends, and re-encodes it byte for byte", () => {
    const wire = fixture("rrq-atftp.bin");
    const packet = decodePacket(wire);
    expect(packet).toMatchObject({ op: Opcode.RRQ, filename: "boot/ipxe.efi", mode: "octet" });
    expect(encodePacket(packet)).toEqual(wire);
  });

  it("reads an ERROR whose message lacks its NUL (lenient on purpose)", () => {
    expect(decodePacket(bytes([0, 5, 0, 1], "gone"))).toEqual({ op: Opcode.ERROR, code: 1, message: "gone" });
  });

  const malformed: [string, Buffer, string][] = [
    ["empty datagram", bytes([]), "truncated"],
    ["one byte", bytes([0]), "truncated"],
    ["opcode 0", bytes([0, 0, 0, 0]), "unknown-opcode"],
    ["opcode 7", bytes([0, 7], "x\0"), "unknown-opcode"],
    ["opcode 256", bytes([1, 0]), "unknown-opcode"],
    ["RRQ with no filename terminator", bytes([0, 1], "file"), "unterminated-string"],
    ["RRQ with no mode", bytes([0, 1], "file\0"), "unterminated-string"],
    ["RRQ with unterminated mode", bytes([0, 1], "file\0octet"), "unterminated-string"],
    ["RRQ with empty filename", bytes([0, 1], "\0octet\0"), "empty-field"],
    ["RRQ with empty mode", bytes([0, 1], "file\0\0"), "empty-field"],
    ["RRQ with an option and no value", bytes([0, 1], "f\0octet\0blksize\0"), "odd-options"],
    [
      "RRQ with an unterminated option value",
      bytes([0, 1], "f\0octet\0blksize\x00512"),
      "unterminated-string",
    ],
    ["RRQ with an empty option name", bytes([0, 1], "f\0octet\0\x00512\0"), "empty-field"],
    ["WRQ cut short", bytes([0, 2]), "unterminated-string"],
    ["DATA without block", bytes([0, 3, 0]), "truncated"],
    ["ACK of 3 bytes", bytes([0, 4, 0]), "truncated"],
    ["ACK of 5 bytes", bytes([0, 4, 0, 1, 0]), "trailing-bytes"],
    ["ERROR without code", bytes([0, 5, 0]), "truncated"],
    ["ERROR with bytes after the message", bytes([0, 5, 0, 1], "a\0b"), "trailing-bytes"],
    ["OACK without options", bytes([0, 6]), "empty-field"],
    ["OACK with a dangling name", bytes([0, 6], "blksize\0"), "odd-options"],
  ];

  it.each(malformed)("refuses %s", (_name, wire, reason) => {
    let caught: unknown;
    try {
      decodePacket(wire);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TftpPacketError);
    expect((caught as TftpPacketError).reason).toBe(reason);
    expect((caught as TftpPacketError).code).toBe("ERR_TFTP_PACKET");
  });

  const unencodable: [string, TftpPacket, string][] = [
    ["block above 65535", { op: Opcode.ACK, block: 65536 }, "out-of-range"],
    ["negative block", { op: Opcode.DATA, block: -1, data: new Uint8Array(0) }, "out-of-range"],
    ["fractional error code", { op: Opcode.ERROR, code: 1.5, message: "" }, "out-of-range"],
    ["NUL in a filename", { op: Opcode.RRQ, filename: "a\0b", mode: "octet", options: [] }, "nul-in-string"],
    ["empty filename", { op: Opcode.RRQ, filename: "", mode: "octet", options: [] }, "empty-field"],
    ["NUL in an error message", { op: Opcode.ERROR, code: 0, message: "x\0" }, "nul-in-string"],
    ["OACK without options", { op: Opcode.OACK, options: [] }, "empty-field"],
  ];

  it.each(unencodable)("will not encode %s", (_name, packet, reason) => {
    expect(() => encodePacket(packet)).toThrow(expect.objectContaining({ reason }));
  });
});

describe("tftp packet codec under fuzzing", () => {
  // The same inputs as controller/bench/tftp-fuzz.ts, which runs a million of them.
  it("only ever returns a packet or throws TftpPacketError, and decoded packets re-encode", () => {
    let decoded = 0;
    for (const wire of tftpFuzzInputs(tftpFuzzSeeds(), 10_000, 0x5eed)) {
      let packet: TftpPacket | undefined;
      try {
        packet = decodePacket(wire);
      } catch (err) {
        if (!(err instanceof TftpPacketError))
          throw new Error(`input ${wire.toString("hex")} threw ${String(err)}`);
        continue;
      }
      decoded++;
      // A decoded packet survives a second trip through the codec unchanged.
      const again = decodePacket(encodePacket(packet));
      if (!isDeepStrictEqual(again, packet)) expect(again, wire.toString("hex")).toEqual(packet);
    }
    expect(decoded).toBeGreaterThan(1000); // the mutations reach past the first checks
  });
});
