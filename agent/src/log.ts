// Console logging. The agent's stdout is the machine's serial console, the one place an
// operator can read when the network is down, so every line starts with `weft-agent:` and
// carries its context as key=value pairs.

export type Fields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger whose lines all carry `fields`. */
  child(fields: Fields): Logger;
}

function render(fields: Fields): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    parts.push(`${k}=${/[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s}`);
  }
  return parts.join(" ");
}

export function consoleLogger(
  write: (line: string) => void = (l) => process.stdout.write(`${l}\n`),
  bound: Fields = {},
): Logger {
  const line = (level: string, msg: string, fields: Fields = {}): void => {
    const rest = render({ ...bound, ...fields });
    const prefix = level === "info" ? "weft-agent:" : `weft-agent: ${level.toUpperCase()}`;
    write(rest ? `${prefix} ${msg} ${rest}` : `${prefix} ${msg}`);
  };
  return {
    info: (m, f) => line("info", m, f),
    warn: (m, f) => line("warn", m, f),
    error: (m, f) => line("error", m, f),
    child: (f) => consoleLogger(write, { ...bound, ...f }),
  };
}

/** A logger that keeps its lines, for tests. */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(
    consoleLogger((l) => lines.push(l)),
    { lines },
  );
}

export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
