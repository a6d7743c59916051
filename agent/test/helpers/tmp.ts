import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const FIXTURES = fileURLToPath(new URL("../fixtures/", import.meta.url));

/** A fresh temp directory; the caller removes it with `cleanup`. */
export async function tempDir(prefix = "weft-agent-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A writable copy of a fixture tree. */
export async function fixtureCopy(name: string): Promise<string> {
  const dir = await tempDir();
  await cp(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

export const cleanup = (dir: string): Promise<void> => rm(dir, { recursive: true, force: true });
