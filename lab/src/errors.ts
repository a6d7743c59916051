// Lab failures with a stable code and, where one helps, what to do about it.

export type LabErrorCode =
  | "LAB_MISSING_TOOL" // a Debian package is not installed
  | "LAB_BAD_INPUT" // a flag, name or server that does not fit
  | "LAB_UNKNOWN_SERVER" // a server name the lab does not have
  | "LAB_NOT_UP" // the command needs a lab and there is none
  | "LAB_BUSY" // another weft-lab holds the state directory
  | "LAB_COMMAND_FAILED" // a system command failed or timed out
  | "LAB_STATE_CORRUPT"; // the state file cannot be read

export class LabError extends Error {
  override readonly name = "LabError";
  readonly code: LabErrorCode;
  readonly hint: string | undefined;

  constructor(code: LabErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }
}
