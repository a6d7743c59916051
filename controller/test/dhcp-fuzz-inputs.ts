// Inputs for the DHCP fuzz test and benchmark: random datagrams and mutations of the golden
// packets, from a seeded generator so a failure can be replayed.
import { MAGIC_COOKIE } from "../src/netboot/dhcp/codec.js";
import { mutate, rng } from "./fuzz-mutate.js";

const INTERESTING = [0, 1, 2, 3, 4, 6, 16, 17, 52, 53, 0x7f, 0x80, 0xfe, 0xff];

export function* fuzzInputs(seeds: readonly Buffer[], count: number, seed = 1): Generator<Buffer> {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[r() % a.length] as T;
  for (let n = 0; n < count; n++) {
    const kind = r() % 10;
    if (kind === 0) {
      // Pure noise, any length up to a bit past the size limit.
      const b = Buffer.alloc(r() % (r() % 8 === 0 ? 9000 : 700));
      for (let i = 0; i < b.length; i++) b[i] = r() & 255;
      yield b;
      continue;
    }
    if (kind === 1) {
      // A valid header and cookie followed by noise: exercises the option walk.
      const b = Buffer.alloc(240 + (r() % 400));
      for (let i = 0; i < b.length; i++) b[i] = r() & 255;
      b[0] = 1 + (r() % 2);
      b[2] = r() % 17;
      b.writeUInt32BE(MAGIC_COOKIE, 236);
      yield b;
      continue;
    }
    let out: Buffer = Buffer.from(pick(seeds));
    const edits = 1 + (r() % 6);
    for (let e = 0; e < edits; e++) {
      switch (r() % 4) {
        case 0:
          // Aim at the options area: lengths and codes live there.
          if (out.length > 240) out[240 + (r() % (out.length - 240))] = pick(INTERESTING);
          break;
        case 1:
          // Overload: option 52 at the start of the options area, noise in file/sname.
          if (out.length > 243) {
            out[240] = 52;
            out[241] = 1;
            out[242] = 1 + (r() % 3);
          }
          break;
        default:
          out = mutate(out, r, INTERESTING, 300);
      }
    }
    yield out;
  }
}
