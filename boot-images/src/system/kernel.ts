// The Debian kernel the images boot: the image package that the `linux-image-amd64`
// metapackage depends on (not whatever kernel this machine is running), its vmlinuz, and the
// modules a list of drivers needs, resolved through modules.dep.
import { readFile } from "node:fs/promises";
import type { CommandRunner } from "../core/exec.js";
import { firstDependency, packageFiles } from "./dpkg.js";

export interface Kernel {
  /** e.g. linux-image-6.1.0-56-amd64 */
  readonly package: string;
  /** e.g. 6.1.0-56-amd64 */
  readonly release: string;
  readonly vmlinuz: string;
  readonly modulesDir: string;
}

export async function findKernel(run: CommandRunner, metaPackage = "linux-image-amd64"): Promise<Kernel> {
  const pkg = await firstDependency(run, metaPackage, "linux-image-");
  const files = await packageFiles(run, pkg);
  const vmlinuz = files.find((f) => /^\/boot\/vmlinuz-/.test(f));
  if (!vmlinuz) throw new Error(`${pkg} ships no /boot/vmlinuz-*`);
  const release = vmlinuz.slice("/boot/vmlinuz-".length);
  return { package: pkg, release, vmlinuz, modulesDir: `/lib/modules/${release}` };
}

/** Module name as the kernel knows it: file name without `.ko[.xz|.zst|.gz]`, dashes as underscores. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, "").replaceAll("-", "_");
}

/** modules.dep: `path: dep1 dep2 ...` → name → {path, deps (paths)}. */
export function parseModulesDep(text: string): Map<string, { path: string; deps: string[] }> {
  const out = new Map<string, { path: string; deps: string[] }>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    out.set(moduleName(path), { path, deps });
  }
  return out;
}

/**
 * The module files to load, in an order where every module comes after its dependencies (the
 * order `insmod` needs). Names that are built into the kernel (listed in modules.builtin) are
 * skipped; names that are neither are an error.
 */
export function resolveModules(
  dep: Map<string, { path: string; deps: string[] }>,
  builtin: ReadonlySet<string>,
  wanted: readonly string[],
): string[] {
  const byPath = new Map<string, string>();
  for (const [name, e] of dep) byPath.set(e.path, name);
  const order: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    if (done.has(name)) return;
    const entry = dep.get(name);
    if (!entry) {
      if (builtin.has(name)) return;
      throw new Error(`kernel module ${name} is neither a module nor built in`);
    }
    if (visiting.has(name)) throw new Error(`module dependency cycle at ${name}`);
    visiting.add(name);
    for (const d of entry.deps) visit(byPath.get(d) ?? moduleName(d));
    visiting.delete(name);
    done.add(name);
    order.push(entry.path);
  };
  for (const w of wanted) visit(w.replaceAll("-", "_"));
  return order;
}

export async function modulesToLoad(kernel: Kernel, wanted: readonly string[]): Promise<string[]> {
  const dep = parseModulesDep(await readFile(`${kernel.modulesDir}/modules.dep`, "utf8"));
  const builtinText = await readFile(`${kernel.modulesDir}/modules.builtin`, "utf8").catch(() => "");
  const builtin = new Set(builtinText.split("\n").filter(Boolean).map(moduleName));
  return resolveModules(dep, builtin, wanted);
}
