// Reading the kernel's view of the machine from a root directory: `/` on a real machine, a
// fixture tree in tests. Missing files read as null; nothing here writes.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";

export async function readText(root: string, path: string): Promise<string | null> {
  try {
    return (await readFile(join(root, path), "utf8")).trim();
  } catch {
    return null;
  }
}

export async function readInt(root: string, path: string): Promise<number | null> {
  const t = await readText(root, path);
  if (t === null || !/^-?\d+$/.test(t)) return null;
  return Number(t);
}

export async function exists(root: string, path: string): Promise<boolean> {
  try {
    await stat(join(root, path));
    return true;
  } catch {
    return false;
  }
}

export async function list(root: string, path: string): Promise<string[]> {
  try {
    return (await readdir(join(root, path))).sort();
  } catch {
    return [];
  }
}

/** Firmware values that mean "nobody filled this in". */
const PLACEHOLDERS = new Set(["", "none", "not specified", "to be filled by o.e.m.", "default string", "0"]);

export function meaningful(v: string | null): string | null {
  return v === null || PLACEHOLDERS.has(v.toLowerCase()) ? null : v;
}
