import { describe, expect, it } from "vitest";
import { canonicalJson } from "../src/core/hash.js";
import { computeInputKey, type KeyInputs } from "../src/core/key.js";

const base: KeyInputs = {
  recipe: "maintenance",
  spec: { modules: ["virtio_net", "ext4"], zstdLevel: 12 },
  files: { "maintenance/init": "a".repeat(64) },
  packages: { "busybox-static": "1:1.35.0-4", nodejs: "20.20.2-1" },
  extra: { "agent-bundle": "b".repeat(64) },
};

describe("input key", () => {
  it("is a sha256 hex digest and stable for equal inputs", () => {
    const k = computeInputKey(base);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(computeInputKey(structuredClone(base))).toBe(k);
  });

  it("does not depend on the order object keys were written in", () => {
    const reordered: KeyInputs = {
      extra: base.extra,
      packages: { nodejs: "20.20.2-1", "busybox-static": "1:1.35.0-4" },
      files: base.files,
      spec: { zstdLevel: 12, modules: ["virtio_net", "ext4"] },
      recipe: "maintenance",
    };
    expect(computeInputKey(reordered)).toBe(computeInputKey(base));
  });

  it.each<[string, KeyInputs]>([
    ["a recipe file changes", { ...base, files: { "maintenance/init": "c".repeat(64) } }],
    ["a recipe file is added", { ...base, files: { ...base.files, "common/udhcpc.script": "d".repeat(64) } }],
    ["a package version changes", { ...base, packages: { ...base.packages, nodejs: "20.20.3-1" } }],
    ["the agent bundle changes", { ...base, extra: { "agent-bundle": "e".repeat(64) } }],
    ["the spec changes", { ...base, spec: { modules: ["virtio_net", "ext4"], zstdLevel: 19 } }],
    ["module order changes", { ...base, spec: { modules: ["ext4", "virtio_net"], zstdLevel: 12 } }],
    ["the recipe name changes", { ...base, recipe: "guest-base" }],
  ])("changes when %s", (_why, changed) => {
    expect(computeInputKey(changed)).not.toBe(computeInputKey(base));
  });
});

describe("canonical JSON", () => {
  it("sorts keys at every level and drops undefined", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });
});
