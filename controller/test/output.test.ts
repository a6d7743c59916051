import { describe, expect, it } from "vitest";
import { age, render, renderTable } from "../src/cli/output.js";

const rows = [
  { name: "srv1", state: "ready", err: null },
  { name: "server-two", state: "failed", err: "disk gone" },
];
const cols = [
  { header: "NAME", get: (r: (typeof rows)[number]) => r.name },
  { header: "STATE", get: (r: (typeof rows)[number]) => r.state },
  { header: "ERROR", get: (r: (typeof rows)[number]) => r.err, wide: true },
];

describe("CLI output", () => {
  it("aligns table columns and hides wide columns unless asked", () => {
    expect(renderTable(rows, cols, false)).toBe(
      "NAME         STATE\nsrv1         ready\nserver-two   failed\n",
    );
    expect(renderTable(rows, cols, true).split("\n")[1]).toBe("srv1         ready    -");
  });

  it("prints the API's object unchanged as JSON and YAML", () => {
    const data = { items: rows };
    expect(JSON.parse(render("json", data, rows, cols))).toEqual(data);
    expect(render("yaml", data, rows, cols)).toContain("- name: srv1");
  });

  it("says how long ago in the largest sensible unit", () => {
    const now = Date.parse("2026-01-02T00:00:00Z");
    expect(age("2026-01-01T23:59:30Z", now)).toBe("30s");
    expect(age("2026-01-01T23:00:00Z", now)).toBe("60m");
    expect(age("2026-01-01T00:00:00Z", now)).toBe("24h");
  });
});
