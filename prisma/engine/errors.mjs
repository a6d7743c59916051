// Errors the engine reports to the CLI in the shape the native engine uses, so the CLI
// prints them as it would print the native engine's.

export class UserFacingError extends Error {
  /**
   * @param {string | null} code Prisma error code (P1003...), or null for a plain message
   * @param {string} message
   * @param {Record<string, unknown>} [meta]
   */
  constructor(code, message, meta = {}) {
    super(message);
    this.code = code;
    this.meta = meta;
  }
}

/**
 * The `error` member of a JSON-RPC response. The CLI shows `data.message`, prefixed by
 * `data.error_code` when there is one, and offers a bug report when `data.is_panic` is set.
 * @param {unknown} error
 */
export function rpcError(error) {
  const e = /** @type {{ code?: unknown, message?: unknown, meta?: unknown, name?: unknown }} */ (
    error instanceof Object ? error : { message: String(error) }
  );
  const message = typeof e.message === "string" ? e.message : String(error);
  // A wasm trap (Rust panic) leaves a RuntimeError; the engine instance is unusable after it.
  const isPanic = error instanceof WebAssembly.RuntimeError;
  /** @type {Record<string, unknown>} */
  const data = { is_panic: isPanic, message };
  if (typeof e.code === "string" && /^P\d{4}$/.test(e.code)) {
    data["error_code"] = e.code;
    data["meta"] = e.meta ?? {};
  }
  return { code: 4466, message: "An error happened. Check the data field for details.", data };
}
