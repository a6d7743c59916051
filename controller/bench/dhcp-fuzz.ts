// Fuzz the DHCP codec with a million inputs (random and mutated golden packets) and print the
// rate. Exits non-zero if decode ever throws anything but DhcpDecodeError.
//   npx tsx controller/bench/dhcp-fuzz.ts [count] [seed]
import { decodeRequest } from "../src/netboot/dhcp/codec.js";
import { DhcpDecodeError } from "../src/netboot/dhcp/errors.js";
import { fixture, fixtureNames } from "../test/dhcp-helpers.js";
import { fuzzInputs } from "../test/dhcp-fuzz-inputs.js";

const count = Number(process.argv[2] ?? 1_000_000);
const seed = Number(process.argv[3] ?? Date.now() % 0x7fffffff);
const seeds = fixtureNames().map(fixture);
const codes = new Map<string, number>();
let ok = 0;
const t0 = process.hrtime.bigint();
for (const input of fuzzInputs(seeds, count, seed)) {
  try {
    decodeRequest(input);
    ok++;
  } catch (e) {
    if (!(e instanceof DhcpDecodeError)) {
      console.error(`seed ${seed}: decode threw ${String(e)} for ${input.toString("hex")}`);
      process.exit(1);
    }
    codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
  }
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`seed ${seed}: ${count} inputs in ${secs.toFixed(2)} s, ${Math.round(count / secs)} inputs/s`);
console.log(`decoded ${ok}; refused ${[...codes].map(([c, n]) => `${c} ${n}`).join(", ")}`);
