// Inputs for the TFTP fuzz test and benchmark: random datagrams and mutations of real
// packets (requests captured from atftp and curl, and one packet of every kind), from a
// seeded generator so that a failure can be replayed.
import { readFileSync } from "node:fs";
import { encodePacket, Opcode } from "../src/netboot/tftp/packet.js";
import { mutate, rng } from "./fuzz-mutate.js";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/tftp/${name}`, import.meta.url));

export function tftpFuzzSeeds(): Buffer[] {
  return [
    fixture("rrq-atftp.bin"),
    fixture("rrq-curl.bin"),
    encodePacket({
      op: Opcode.RRQ,
      filename: "ipxe.efi",
      mode: "octet",
      options: [
        ["blksize", "1468"],
        ["windowsize", "4"],
        ["tsize", "0"],
      ],
    }),
    encodePacket({ op: Opcode.WRQ, filename: "upload", mode: "netascii", options: [] }),
    encodePacket({ op: Opcode.ACK, block: 7 }),
    encodePacket({ op: Opcode.ERROR, code: 1, message: "file not found" }),
    encodePacket({ op: Opcode.OACK, options: [["tsize", "42"]] }),
    encodePacket({ op: Opcode.DATA, block: 3, data: new Uint8Array(16) }),
  ];
}

// Bytes that sit on the edges of what the decoder checks: NULs end strings, 0..7 are opcodes.
const INTERESTING = [0, 1, 2, 3, 4, 5, 6, 7, 0x2e, 0x2f, 0x7f, 0x80, 0xff];

export function* tftpFuzzInputs(seeds: readonly Buffer[], count: number, seed = 1): Generator<Buffer> {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[r() % a.length] as T;
  for (let n = 0; n < count; n++) {
    if (n % 2 === 0) {
      // Noise, mostly short, now and then past the largest datagram a TFTP peer sends.
      const b = Buffer.alloc(r() % (r() % 16 === 0 ? 70_000 : 80));
      for (let i = 0; i < b.length; i++) b[i] = r() & 255;
      // Mostly a valid opcode, so that the decoder behind it is exercised.
      if (b.length >= 2 && r() % 10 < 7) {
        b[0] = 0;
        b[1] = 1 + (r() % 6);
      }
      yield b;
      continue;
    }
    let out: Buffer = Buffer.from(pick(seeds));
    const edits = 1 + (r() % 5);
    for (let e = 0; e < edits; e++) out = mutate(out, r, INTERESTING);
    yield out;
  }
}
