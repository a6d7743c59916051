// Typed agent errors. Every failure the agent reports or logs carries a coarse `type`, a stable
// `code` to branch on, a human message and optional details; this is also the shape of a
// command report's `error` field, so an error travels to the controller unchanged.

export type AgentErrorType =
  | "invalid_request" // the command or configuration is malformed
  | "unauthorized" // the controller refused our nonce or token
  | "unavailable" // the controller or image server could not be reached
  | "integrity" // an image failed its checksum, size or format check
  | "unsupported" // the machine or request needs something the agent cannot do yet
  | "device" // a disk, partition or file system operation failed
  | "exec" // a subprocess failed
  | "internal";

export interface AgentErrorBody {
  type: string;
  code: string;
  message: string;
  details?: unknown;
}

export class AgentError extends Error {
  override readonly name = "AgentError";
  readonly type: AgentErrorType;
  readonly code: string;
  readonly details: unknown;

  constructor(
    type: AgentErrorType,
    code: string,
    message: string,
    options: { details?: unknown; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.type = type;
    this.code = code;
    this.details = options.details;
  }

  toBody(): AgentErrorBody {
    return this.details === undefined
      ? { type: this.type, code: this.code, message: this.message }
      : { type: this.type, code: this.code, message: this.message, details: this.details };
  }
}

/** Any thrown value as a wire error body; unknown errors become `internal`. */
export function errorBody(err: unknown): AgentErrorBody {
  if (err instanceof AgentError) return err.toBody();
  const message = err instanceof Error ? err.message : String(err);
  return { type: "internal", code: "INTERNAL", message };
}

export function isAgentError(err: unknown, code?: string): err is AgentError {
  return err instanceof AgentError && (code === undefined || err.code === code);
}
