import { describe, expect, it } from "vitest";
import { parseDeb822Sources, parseOneLineSources, pickMirror } from "../src/system/mirror.js";
import { aptListName } from "../src/system/release.js";

// Mirror host names here are placeholders of the reserved example domain.
const DEB822 = `Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
`;

describe("deb822 sources", () => {
  it("reads every stanza with its fields", () => {
    const s = parseDeb822Sources(DEB822, "x.sources");
    expect(s).toHaveLength(4);
    expect(s[0]).toEqual({
      types: ["deb"],
      uris: ["http://mirror.example/debian"],
      suites: ["bookworm", "bookworm-updates"],
      components: ["main", "contrib"],
      signedBy: "/usr/share/keyrings/debian-archive-keyring.gpg",
      enabled: true,
      origin: "x.sources",
    });
    expect(s[3]?.enabled).toBe(false);
  });

  it("picks the enabled binary source of the suite itself", () => {
    const m = pickMirror(parseDeb822Sources(DEB822, "x.sources"), "bookworm");
    expect(m).toMatchObject({ uri: "http://mirror.example/debian", suite: "bookworm" });
  });

  it("skips security, source-only and disabled entries", () => {
    const text = DEB822.split("\n\n").slice(1).join("\n\n");
    expect(pickMirror(parseDeb822Sources(text, "x"), "bookworm")).toBeUndefined();
  });

  it("ignores an inline key block in Signed-By", () => {
    const s = parseDeb822Sources(
      "Types: deb\nURIs: https://m.example/d/\nSuites: bookworm\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
      "x",
    );
    expect(s[0]?.signedBy).toBeUndefined();
    expect(pickMirror(s, "bookworm")?.uri).toBe("https://m.example/d");
  });
});

describe("one-line sources", () => {
  const LIST = `# comment
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian/ bookworm main non-free-firmware # trailing
deb http://security.example/debian-security bookworm-security main
`;

  it("parses options, URI, suite and components", () => {
    const s = parseOneLineSources(LIST, "sources.list");
    expect(s).toHaveLength(3);
    expect(s[1]).toMatchObject({
      types: ["deb"],
      uris: ["http://mirror.example/debian/"],
      suites: ["bookworm"],
      components: ["main", "non-free-firmware"],
      signedBy: "/usr/share/keyrings/k.gpg",
    });
  });

  it("picks the mirror without its trailing slash", () => {
    expect(pickMirror(parseOneLineSources(LIST, "l"), "bookworm")).toEqual({
      uri: "http://mirror.example/debian",
      suite: "bookworm",
      signedBy: "/usr/share/keyrings/k.gpg",
      origin: "l",
    });
  });

  it("finds nothing for a suite that is not configured", () => {
    expect(pickMirror(parseOneLineSources(LIST, "l"), "trixie")).toBeUndefined();
  });
});

describe("apt list file names", () => {
  it("drops the scheme and turns slashes into underscores", () => {
    expect(aptListName("http://mirror.example/debian/", "bookworm", "InRelease")).toBe(
      "mirror.example_debian_dists_bookworm_InRelease",
    );
  });
});
