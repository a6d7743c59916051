// Fuzz the TFTP codec with a million inputs (random datagrams and mutated real packets) and
// print the rate. Exits non-zero if decode ever throws anything but TftpPacketError, or if a
// packet it decoded does not survive a second trip through the codec.
//   npx tsx controller/bench/tftp-fuzz.ts [count] [seed]
import { isDeepStrictEqual } from "node:util";
import { decodePacket, encodePacket, Opcode, TftpPacketError } from "../src/netboot/tftp/packet.js";
import { tftpFuzzInputs, tftpFuzzSeeds } from "../test/tftp-fuzz-inputs.js";

const count = Number(process.argv[2] ?? 1_000_000);
const seed = Number(process.argv[3] ?? Date.now() % 0x7fffffff);
const NAMES = new Map<number, string>(Object.entries(Opcode).map(([name, op]) => [op, name]));
const reasons = new Map<string, number>();
const decoded = new Map<string, number>();
const t0 = process.hrtime.bigint();
for (const input of tftpFuzzInputs(tftpFuzzSeeds(), count, seed)) {
  let packet;
  try {
    packet = decodePacket(input);
  } catch (e) {
    if (!(e instanceof TftpPacketError)) {
      console.error(`seed ${seed}: decode threw ${String(e)} for ${input.toString("hex")}`);
      process.exit(1);
    }
    reasons.set(e.reason, (reasons.get(e.reason) ?? 0) + 1);
    continue;
  }
  const name = NAMES.get(packet.op) ?? String(packet.op);
  decoded.set(name, (decoded.get(name) ?? 0) + 1);
  let again;
  try {
    again = decodePacket(encodePacket(packet));
  } catch (e) {
    // A decoded packet the encoder refuses (e.g. an option it will not write) is fine; a
    // crash of another kind is not.
    if (e instanceof TftpPacketError) continue;
    console.error(`seed ${seed}: re-encode threw ${String(e)} for ${input.toString("hex")}`);
    process.exit(1);
  }
  if (!isDeepStrictEqual(again, packet)) {
    console.error(`seed ${seed}: ${input.toString("hex")} changed on a second trip through the codec`);
    process.exit(1);
  }
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const list = (m: Map<string, number>) => [...m].map(([k, n]) => `${k} ${n}`).join(", ");
console.log(`seed ${seed}: ${count} inputs in ${secs.toFixed(2)} s, ${Math.round(count / secs)} inputs/s`);
console.log(`decoded: ${list(decoded)}`);
console.log(`refused: ${list(reasons)}`);
