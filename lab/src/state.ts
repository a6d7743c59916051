// The lab's bookkeeping: lab.json in the state directory records what `up` built and which
// processes it started, so `down` can remove exactly that and a half-built lab can be
// repaired or removed. Written atomically (temporary file + rename).
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import { z } from "zod";
import { LabError } from "./errors.js";
import { isRunning, recordProcess, type ProcessRecord } from "./procs.js";

const processRecord = z.strictObject({
  pid: z.number().int().positive(),
  startTime: z.string(),
  cmd: z.string(),
});

export const labStateSchema = z.strictObject({
  version: z.literal(1),
  netns: z.string(),
  bridge: z.string(),
  /** "building" until every step of `up` has succeeded; a crash leaves it there. */
  phase: z.enum(["building", "up"]),
  createdAt: z.string(),
  updatedAt: z.string(),
  servers: z.array(z.strictObject({ name: z.string(), mac: z.string() })),
  memoryMiB: z.number().int().positive(),
  vcpus: z.number().int().positive(),
  diskGiB: z.number().int().positive(),
  firmware: z.enum(["bios", "uefi"]),
  accel: z.enum(["kvm", "tcg"]).optional(),
  /** Processes this lab started, by role: virtlogd, libvirtd, ra, controller. */
  processes: z.record(z.string(), processRecord),
});
export type LabState = z.infer<typeof labStateSchema>;

export function readState(file: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LabError("LAB_STATE_CORRUPT", `${file}: not JSON`, {
      cause: err,
      hint: "remove the lab with `weft-lab down`",
    });
  }
  const r = labStateSchema.safeParse(json);
  if (!r.success) {
    throw new LabError("LAB_STATE_CORRUPT", `${file}: ${z.prettifyError(r.error)}`, {
      hint: "remove the lab with `weft-lab down`",
    });
  }
  return r.data;
}

export function writeState(file: string, state: LabState): void {
  writeFileAtomic(file, `${JSON.stringify(labStateSchema.parse(state), null, 2)}\n`);
}

export function writeFileAtomic(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Takes the state directory for one weft-lab command at a time. A lock left by a process
 * that no longer runs is taken over. Returns the release function.
 */
export function acquireLock(file: string): () => void {
  mkdirSync(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      const me = recordProcess(process.pid, "weft-lab");
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let holder: ProcessRecord | undefined;
      try {
        holder = processRecord.parse(JSON.parse(readFileSync(file, "utf8")));
      } catch {
        holder = undefined;
      }
      if (holder !== undefined && isRunning(holder)) {
        throw new LabError("LAB_BUSY", `another weft-lab (pid ${holder.pid}) is working on this lab`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new LabError("LAB_BUSY", `cannot take the lab lock ${file}`);
}
