// Output formats shared by every subcommand: data on stdout, diagnostics on stderr.
import YAML from "yaml";

export type Format = "table" | "wide" | "json" | "yaml";
export const FORMATS: Format[] = ["table", "wide", "json", "yaml"];

export interface Column<T> {
  header: string;
  get: (row: T) => unknown;
  /** Shown only with -o wide. */
  wide?: boolean;
}

function cell(v: unknown): string {
  if (v === null || v === undefined || v === "") return "-";
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function renderTable<T>(rows: T[], columns: Column<T>[], wide: boolean): string {
  const cols = columns.filter((c) => wide || !c.wide);
  const cells = rows.map((r) => cols.map((c) => cell(c.get(r))));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) =>
    vals.map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!))).join("   ");
  return [line(cols.map((c) => c.header)), ...cells.map(line)].join("\n") + "\n";
}

/** Renders data for -o: json/yaml show the API's object as it is, tables pick columns. */
export function render<T>(format: Format, data: unknown, rows: T[], columns: Column<T>[]): string {
  switch (format) {
    case "json":
      return JSON.stringify(data, null, 2) + "\n";
    case "yaml":
      return YAML.stringify(data);
    default:
      return renderTable(rows, columns, format === "wide");
  }
}

/** Seconds or minutes ago, for humans. */
export function age(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
