import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { realpath } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { normalizeRequestPath, resolveUnderRoot, TftpPathError } from "../src/netboot/tftp/paths.js";

describe("tftp request path normalization", () => {
  const accepted: [string, string][] = [
    ["pxelinux.0", "pxelinux.0"],
    ["/pxelinux.0", "pxelinux.0"],
    ["//boot///ipxe.efi", "boot/ipxe.efi"],
    ["./boot/./ipxe.efi", "boot/ipxe.efi"],
    ["boot\\ipxe.efi", "boot/ipxe.efi"],
    ["/etc/passwd", "etc/passwd"],
    ["..foo/bar..", "..foo/bar.."],
  ];
  it.each(accepted)("maps %j to %j under the root", (asked, relative) => {
    expect(normalizeRequestPath(asked)).toBe(relative);
  });

  const refused: [string, string][] = [
    ["../etc/passwd", "dot-dot"],
    ["boot/../../etc/passwd", "dot-dot"],
    ["boot/..", "dot-dot"],
    ["..\\windows", "dot-dot"],
    ["a\0b", "nul-byte"],
    ["a\nb", "control-char"],
    ["a\x7fb", "control-char"],
    ["", "empty"],
    ["/", "empty"],
    ["./.", "empty"],
    ["x".repeat(2000), "too-long"],
  ];
  it.each(refused)("refuses %j (%s)", (asked, reason) => {
    expect(() => normalizeRequestPath(asked)).toThrow(TftpPathError);
    expect(() => normalizeRequestPath(asked)).toThrow(expect.objectContaining({ reason }));
  });
});

describe("tftp root confinement", () => {
  let dir: string;
  let root: string;

  beforeAll(async () => {
    dir = await realpath(await mkdtemp(path.join(tmpdir(), "weft-tftp-paths-")));
    root = path.join(dir, "root");
    await mkdir(path.join(root, "boot"), { recursive: true });
    await writeFile(path.join(root, "boot", "ipxe.efi"), "efi");
    await writeFile(path.join(dir, "secret"), "secret");
    await mkdir(path.join(dir, "root-sibling"));
    await writeFile(path.join(dir, "root-sibling", "f"), "f");
    await symlink(path.join(dir, "secret"), path.join(root, "escape"));
    await symlink("boot/ipxe.efi", path.join(root, "inside"));
    await symlink("../root-sibling/f", path.join(root, "prefix-trick"));
    await symlink("/", path.join(root, "slash"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("resolves a file under the root", async () => {
    await expect(resolveUnderRoot(root, "boot/ipxe.efi")).resolves.toBe(path.join(root, "boot", "ipxe.efi"));
  });

  it("follows a symlink that stays inside the root", async () => {
    await expect(resolveUnderRoot(root, "inside")).resolves.toBe(path.join(root, "boot", "ipxe.efi"));
  });

  it.each(["escape", "prefix-trick", "slash/etc/passwd"])("refuses the escaping symlink %s", async (name) => {
    await expect(resolveUnderRoot(root, name)).rejects.toMatchObject({ reason: "outside-root" });
  });

  it("lets a missing file fail with ENOENT", async () => {
    await expect(resolveUnderRoot(root, "nope")).rejects.toMatchObject({ code: "ENOENT" });
  });
});
