// Map a requested TFTP file name to a path under the TFTP root, or refuse it.
//
// Policy (decided here, tested in tftp-paths.test.ts):
// - The name is always relative to the root. A leading "/" (some PXE ROMs send one) is
//   dropped, so "/ipxe.efi" and "ipxe.efi" are the same file, and "/etc/passwd" means
//   ROOT/etc/passwd, never the host's /etc/passwd. This is what tftpd-hpa --secure does.
// - Backslashes are treated as separators (Windows-style boot loaders send them).
// - Any ".." segment is refused outright, as are NUL bytes, control characters and names
//   that end up empty.
// - The surviving path is resolved with realpath and must still lie under the real path of
//   the root, so a symlink inside the root that points outside it is refused; a symlink that
//   stays inside is followed.
// - Only regular files are served.

import { realpath } from "node:fs/promises";
import path from "node:path";

export type PathRefusal = "empty" | "nul-byte" | "control-char" | "dot-dot" | "too-long";

export class TftpPathError extends Error {
  readonly code = "ERR_TFTP_PATH";
  constructor(
    readonly reason: PathRefusal | "outside-root",
    message: string,
  ) {
    super(message);
    this.name = "TftpPathError";
  }
}

const MAX_NAME = 1024;

/**
 * Check a requested name and normalize it to a relative POSIX path ("a/b/c"), with no I/O.
 * Throws TftpPathError when the name is refused.
 */
export function normalizeRequestPath(requested: string): string {
  if (requested.includes("\0")) throw new TftpPathError("nul-byte", "file name contains a NUL byte");
  // eslint-disable-next-line no-control-regex
  if (/[\x01-\x1f\x7f]/.test(requested)) {
    throw new TftpPathError("control-char", "file name contains a control character");
  }
  if (requested.length > MAX_NAME) throw new TftpPathError("too-long", "file name is too long");
  const segments = requested.replaceAll("\\", "/").split("/");
  const kept: string[] = [];
  for (const segment of segments) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") throw new TftpPathError("dot-dot", "file name contains a '..' segment");
    kept.push(segment);
  }
  if (kept.length === 0) throw new TftpPathError("empty", "file name is empty");
  return kept.join("/");
}

/**
 * Resolve a normalized relative path under `realRoot` (which must itself be a real path, as
 * returned by realpath). Follows symlinks and refuses a result outside the root.
 * Lets ENOENT and other file system errors through for the caller to map.
 */
export async function resolveUnderRoot(realRoot: string, relative: string): Promise<string> {
  const resolved = await realpath(path.join(realRoot, relative));
  const prefix = realRoot.endsWith(path.sep) ? realRoot : realRoot + path.sep;
  if (!resolved.startsWith(prefix)) {
    throw new TftpPathError("outside-root", "file resolves outside the TFTP root");
  }
  return resolved;
}
