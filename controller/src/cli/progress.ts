// Progress for long operations: a redrawn bar on a terminal, plain lines otherwise (CI=true
// or output not a TTY), so logs stay readable.

export interface ProgressSink {
  update(fraction: number, label: string): void;
  line(text: string): void;
  done(): void;
}

export function progressSink(
  stream: NodeJS.WriteStream,
  env: NodeJS.ProcessEnv,
  started = Date.now(),
): ProgressSink {
  const live = stream.isTTY === true && env["CI"] !== "true";
  let lastLabel = "";
  let lastDecile = -1;
  const elapsed = () => {
    const s = Math.round((Date.now() - started) / 1000);
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  };
  return {
    update(fraction, label) {
      const f = Math.max(0, Math.min(1, fraction));
      if (live) {
        const width = 30;
        const full = Math.round(f * width);
        stream.write(
          `\r\x1b[K[${"#".repeat(full)}${"-".repeat(width - full)}] ${String(Math.round(f * 100)).padStart(3)}%  ${label}  ${elapsed()}`,
        );
        return;
      }
      const decile = Math.floor(f * 10);
      if (label !== lastLabel || decile !== lastDecile) {
        stream.write(`${elapsed()} ${Math.round(f * 100)}% ${label}\n`);
        lastLabel = label;
        lastDecile = decile;
      }
    },
    line(text) {
      stream.write(live ? `\r\x1b[K${text}\n` : `${elapsed()} ${text}\n`);
    },
    done() {
      if (live) stream.write("\n");
    },
  };
}
