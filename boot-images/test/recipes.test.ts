import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { GUEST_SPEC } from "../src/recipes/guest.js";
import { HOST_SPEC } from "../src/recipes/host.js";
import { findRecipe, RECIPES } from "../src/recipes/index.js";
import { MAINTENANCE_SPEC } from "../src/recipes/maintenance.js";

const recipesDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "recipes");
const allFiles = [...new Set([...MAINTENANCE_SPEC.files, ...GUEST_SPEC.files, ...HOST_SPEC.files])];
const shellScripts = allFiles.filter((f) =>
  readFileSync(join(recipesDir, f), "utf8").startsWith("#!/bin/sh"),
);

describe("recipe files", () => {
  it.each(allFiles)("%s exists", (f) => {
    expect(existsSync(join(recipesDir, f))).toBe(true);
  });

  it.each(shellScripts)("%s is valid shell for busybox sh", (f) => {
    expect(() => execFileSync("busybox", ["sh", "-n", join(recipesDir, f)], { stdio: "pipe" })).not.toThrow();
  });

  it("fills the kernel and initrd into the host's extlinux.conf", () => {
    const conf = readFileSync(join(recipesDir, "host/extlinux.conf"), "utf8");
    expect(conf).toContain("@KERNEL@");
    expect(conf).toContain("@INITRD@");
    expect(conf).toMatch(/root=LABEL=weft-root/);
    expect(conf).toMatch(/console=ttyS0/);
  });
});

describe("recipe lookup", () => {
  it.each([
    ["maintenance", "maintenance"],
    ["maintenance-kernel", "maintenance"],
    ["maintenance-initrd", "maintenance"],
    ["guest-base", "guest-base"],
    ["host-bookworm", "host-bookworm"],
  ])("%s is built by %s", (name, recipe) => {
    expect(findRecipe(name)?.name).toBe(recipe);
  });

  it("knows no other names", () => {
    expect(findRecipe("host")).toBeUndefined();
    expect(RECIPES.flatMap((r) => r.artifacts).sort()).toEqual([
      "guest-base",
      "host-bookworm",
      "maintenance-initrd",
      "maintenance-kernel",
    ]);
  });
});
