// The shared libraries a program needs, as the dynamic loader resolves them
// (`ld.so --list PROGRAM`, the mechanism behind ldd).
import type { CommandRunner } from "../core/exec.js";

export const DYNAMIC_LOADER = "/lib64/ld-linux-x86-64.so.2";

/**
 * Parses the loader's listing. Lines look like
 *   `libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2 (0x...)`
 * and `linux-vdso.so.1 (0x...)` (provided by the kernel, no file). Returns absolute paths.
 * Throws when a library is `not found`.
 */
export function parseLoaderList(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.includes("not a dynamic executable") || line.startsWith("statically linked")) continue;
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line);
    if (arrow) {
      const target = arrow[2]!.trim();
      if (target.startsWith("not found")) throw new Error(`shared library ${arrow[1]} not found`);
      const path = target.replace(/\s*\(0x[0-9a-f]+\)$/, "");
      if (path.startsWith("/")) out.push(path);
      continue;
    }
    const direct = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (direct) out.push(direct[1]!);
  }
  return [...new Set(out)];
}

/** Libraries (and the loader itself) for each program, merged. Static programs add nothing. */
export async function sharedLibraries(run: CommandRunner, programs: readonly string[]): Promise<string[]> {
  const all = new Set<string>();
  for (const p of programs) {
    const { stdout, exitCode } = await run.run(DYNAMIC_LOADER, ["--list", p], { okExitCodes: [1] });
    if (exitCode !== 0) continue; // not a dynamic executable
    for (const lib of parseLoaderList(stdout)) all.add(lib);
  }
  return [...all].sort();
}
