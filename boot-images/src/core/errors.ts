// Typed errors with a stable code. A build failure names the image and the step that failed and
// points at the log that holds the failing command's output.

export type ImageErrorCode = "usage" | "build-failed" | "command-failed" | "bad-manifest" | "no-mirror";

export class ImageError extends Error {
  readonly code: ImageErrorCode;
  constructor(code: ImageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ImageError";
    this.code = code;
  }
}

/** A command exited non-zero or could not start. */
export class CommandError extends ImageError {
  readonly command: string;
  readonly exitCode: number | undefined;
  readonly stderrTail: string;
  constructor(command: string, exitCode: number | undefined, stderrTail: string, cause?: unknown) {
    super(
      "command-failed",
      `${command} failed${exitCode === undefined ? "" : ` (exit ${exitCode})`}${stderrTail ? `: ${stderrTail}` : ""}`,
      { cause },
    );
    this.name = "CommandError";
    this.command = command;
    this.exitCode = exitCode;
    this.stderrTail = stderrTail;
  }
}

/** A recipe failed in one of its steps; the log file keeps the full output. */
export class BuildError extends ImageError {
  readonly recipe: string;
  readonly step: string;
  readonly logFile: string;
  constructor(recipe: string, step: string, logFile: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super("build-failed", `${recipe}: step "${step}" failed: ${why} (log: ${logFile})`, { cause });
    this.name = "BuildError";
    this.recipe = recipe;
    this.step = step;
    this.logFile = logFile;
  }
}
