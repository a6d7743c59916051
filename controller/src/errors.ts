// Typed errors with a stable code, an HTTP status and a cause. The API error handler turns
// them into `{type, code, message, details}` bodies; anything else becomes a 500.
import type { ApiErrorBody, ApiErrorType } from "@weft/wire";

const statusByType: Record<ApiErrorType, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  internal: 500,
};

export class WeftError extends Error {
  readonly type: ApiErrorType;
  readonly code: string;
  readonly details: unknown;

  constructor(
    type: ApiErrorType,
    code: string,
    message: string,
    opts: { details?: unknown; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "WeftError";
    this.type = type;
    this.code = code;
    this.details = opts.details;
  }

  get status(): number {
    return statusByType[this.type];
  }

  toBody(): ApiErrorBody {
    const body: ApiErrorBody = { type: this.type, code: this.code, message: this.message };
    if (this.details !== undefined) body.details = this.details;
    return body;
  }
}

export const invalid = (code: string, message: string, details?: unknown) =>
  new WeftError("invalid_request", code, message, { details });
export const notFound = (what: string, id: string) =>
  new WeftError("not_found", `${what.toUpperCase()}_NOT_FOUND`, `${what} ${id} not found`);
export const conflict = (code: string, message: string, details?: unknown) =>
  new WeftError("conflict", code, message, { details });
