// Package facts from dpkg: which package owns a file and which version is installed, on this
// machine or inside a bootstrapped root filesystem.
import { realpath } from "node:fs/promises";
import type { CommandRunner } from "../core/exec.js";

/**
 * Parses `dpkg -S` output (`pkg[:arch][, pkg2]: /path`) into path → first owning package.
 * Diversion lines are skipped.
 */
export function parseDpkgSearch(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("diversion by")) continue;
    const m = /^([^:]+(?::[a-z0-9]+)?(?:, [^:]+)*): (\/.*)$/.exec(line);
    if (!m) continue;
    const pkg = m[1]!.split(", ")[0]!.replace(/:[a-z0-9]+$/, "");
    if (!out.has(m[2]!)) out.set(m[2]!, pkg);
  }
  return out;
}

/** Parses `dpkg-query -W -f '${Package}\t${Version}\n'` output. */
export function parsePackageVersions(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const [pkg, version] = line.split("\t");
    if (pkg && version) out[pkg] = version;
  }
  return out;
}

/** Owning package of each file (trying the path as given and its real path, for merged /usr). */
export async function owningPackages(run: CommandRunner, files: readonly string[]): Promise<string[]> {
  const candidates = new Map<string, string[]>();
  for (const f of files) {
    const real = await realpath(f).catch(() => f);
    const alt = real.startsWith("/usr/") ? real.slice(4) : `/usr${real}`;
    candidates.set(f, [...new Set([f, real, alt])]);
  }
  const all = [...new Set([...candidates.values()].flat())];
  const { stdout } = await run.run("dpkg", ["-S", ...all], { okExitCodes: [1] });
  const owners = parseDpkgSearch(stdout);
  const pkgs = new Set<string>();
  const orphans: string[] = [];
  for (const [f, cands] of candidates) {
    const owner = cands.map((c) => owners.get(c)).find((o) => o !== undefined);
    if (owner) pkgs.add(owner);
    else orphans.push(f);
  }
  if (orphans.length) throw new Error(`no Debian package owns: ${orphans.join(", ")}`);
  return [...pkgs].sort();
}

export async function installedVersions(
  run: CommandRunner,
  packages: readonly string[],
  adminDir?: string,
): Promise<Record<string, string>> {
  const args = [...(adminDir ? [`--admindir=${adminDir}`] : []), "-W", "-f", "${Package}\\t${Version}\\n"];
  const { stdout } = await run.run("dpkg-query", [...args, ...packages]);
  return parsePackageVersions(stdout);
}

/** The first `Depends` alternative of a package, e.g. linux-image-amd64 → linux-image-6.1.0-56-amd64. */
export async function firstDependency(run: CommandRunner, pkg: string, prefix: string): Promise<string> {
  const { stdout } = await run.run("dpkg-query", ["-W", "-f", "${Depends}", pkg]);
  const dep = stdout
    .split(/[,|]/)
    .map((d) => d.trim().split(/\s/)[0] ?? "")
    .find((d) => d.startsWith(prefix));
  if (!dep) throw new Error(`${pkg} does not depend on a ${prefix}* package`);
  return dep;
}

export async function packageFiles(run: CommandRunner, pkg: string): Promise<string[]> {
  const { stdout } = await run.run("dpkg", ["-L", pkg]);
  return stdout.split("\n").filter((l) => l.startsWith("/"));
}
