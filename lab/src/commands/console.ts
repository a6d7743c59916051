import { closeSync, openSync, readSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { LabConfig } from "../config.js";
import { cleanConsole, consoleFile, consoleTail } from "../lab.js";

/** Prints the last lines of a server's console; with follow, keeps printing until the signal aborts. */
export async function runConsole(
  config: LabConfig,
  name: string,
  opts: { follow: boolean; lines: number; signal?: AbortSignal },
): Promise<void> {
  const file = consoleFile(config, name);
  for (const line of consoleTail(file, opts.lines)) console.log(line);
  if (!opts.follow) return;
  let offset = size(file);
  const buf = Buffer.alloc(64 * 1024);
  while (opts.signal?.aborted !== true) {
    const now = size(file);
    if (now < offset) offset = 0; // log truncated or replaced
    if (now > offset) {
      const fd = openSync(file, "r");
      try {
        let n: number;
        while ((n = readSync(fd, buf, 0, buf.length, offset)) > 0) {
          offset += n;
          process.stdout.write(cleanConsole(buf.subarray(0, n).toString("utf8")));
        }
      } finally {
        closeSync(fd);
      }
    }
    await sleep(300).catch(() => undefined);
  }
}

function size(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}
