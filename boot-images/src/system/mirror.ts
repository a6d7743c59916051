// Which Debian mirror to bootstrap from: read from the machine's own apt configuration, in
// either format apt accepts — deb822 `.sources` files (sources.list(5), "DEB822-STYLE FORMAT")
// and one-line `deb [options] uri suite component...` entries. The project never names a
// mirror itself.
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ImageError } from "../core/errors.js";

export interface AptSource {
  readonly types: readonly string[];
  readonly uris: readonly string[];
  readonly suites: readonly string[];
  readonly components: readonly string[];
  readonly signedBy?: string;
  readonly enabled: boolean;
  readonly origin: string;
}

/** Parses a deb822 `.sources` file: stanzas separated by blank lines, `Field: value` lines. */
export function parseDeb822Sources(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  const stanzas = text.split(/\n[ \t]*\n/);
  for (const stanza of stanzas) {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const raw of stanza.split("\n")) {
      if (raw.startsWith("#") || raw.trim() === "") continue;
      if (/^[ \t]/.test(raw) && last !== undefined) {
        // Continuation line (multi-line Signed-By key blocks and the like).
        fields.set(last, `${fields.get(last) ?? ""}\n${raw.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    if (!fields.has("types") || !fields.has("uris")) continue;
    const words = (f: string): string[] => (fields.get(f) ?? "").split(/\s+/).filter(Boolean);
    const signedBy = fields.get("signed-by");
    out.push({
      types: words("types"),
      uris: words("uris"),
      suites: words("suites"),
      components: words("components"),
      ...(signedBy && !signedBy.includes("\n") ? { signedBy } : {}),
      enabled: (fields.get("enabled") ?? "yes").toLowerCase() !== "no",
      origin,
    });
  }
  return out;
}

/** Parses one-line `sources.list` entries; comments and blank lines are skipped. */
export function parseOneLineSources(text: string, origin: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const options = new Map<string, string>();
    for (const opt of (m[2] ?? "").trim().split(/\s+/).filter(Boolean)) {
      const eq = opt.indexOf("=");
      if (eq > 0) options.set(opt.slice(0, eq), opt.slice(eq + 1));
    }
    const signedBy = options.get("signed-by");
    out.push({
      types: [m[1]!],
      uris: [m[3]!],
      suites: [m[4]!],
      components: m[5]!.split(/\s+/).filter(Boolean),
      ...(signedBy ? { signedBy } : {}),
      enabled: true,
      origin,
    });
  }
  return out;
}

export interface Mirror {
  /** The archive root, without a trailing slash. */
  readonly uri: string;
  readonly suite: string;
  readonly signedBy?: string;
  readonly origin: string;
}

/**
 * The entry to bootstrap `suite` from: an enabled binary (`deb`) source carrying exactly that
 * suite with the `main` component. Security and `-updates` suites do not qualify: debootstrap
 * needs the release itself.
 */
export function pickMirror(sources: readonly AptSource[], suite: string): Mirror | undefined {
  for (const s of sources) {
    if (!s.enabled || !s.types.includes("deb")) continue;
    if (!s.suites.includes(suite) || !s.components.includes("main")) continue;
    const uri = s.uris.find((u) => /^https?:\/\//.test(u));
    if (!uri) continue;
    return {
      uri: uri.replace(/\/+$/, ""),
      suite,
      ...(s.signedBy ? { signedBy: s.signedBy } : {}),
      origin: s.origin,
    };
  }
  return undefined;
}

/** Reads `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}` under `aptDir`. */
export async function readAptSources(aptDir = "/etc/apt"): Promise<AptSource[]> {
  const out: AptSource[] = [];
  const tryRead = async (p: string): Promise<string | undefined> => {
    try {
      return await readFile(p, "utf8");
    } catch {
      return undefined;
    }
  };
  const main = await tryRead(join(aptDir, "sources.list"));
  if (main !== undefined) out.push(...parseOneLineSources(main, join(aptDir, "sources.list")));
  let names: string[] = [];
  try {
    names = (await readdir(join(aptDir, "sources.list.d"))).sort();
  } catch {
    names = [];
  }
  for (const n of names) {
    const p = join(aptDir, "sources.list.d", n);
    if (n.endsWith(".sources")) {
      const t = await tryRead(p);
      if (t !== undefined) out.push(...parseDeb822Sources(t, p));
    } else if (n.endsWith(".list")) {
      const t = await tryRead(p);
      if (t !== undefined) out.push(...parseOneLineSources(t, p));
    }
  }
  return out;
}

export async function findMirror(suite: string, aptDir = "/etc/apt"): Promise<Mirror> {
  const mirror = pickMirror(await readAptSources(aptDir), suite);
  if (!mirror) {
    throw new ImageError(
      "no-mirror",
      `no enabled "deb" source for suite ${suite} with component main in ${aptDir}/sources.list{,.d}`,
    );
  }
  return mirror;
}
