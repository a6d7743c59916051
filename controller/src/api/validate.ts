import type { z } from "zod";
import { invalid } from "../errors.js";

/** Parses a request part with a schema; a mismatch is a 400 listing every problem. */
export function parse<S extends z.ZodTypeAny>(
  schema: S,
  value: unknown,
  where: "body" | "query" | "params",
): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    throw invalid(
      where === "body" ? "BODY_INVALID" : where === "query" ? "QUERY_INVALID" : "PARAMS_INVALID",
      `invalid request ${where}`,
      r.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
    );
  }
  return r.data;
}
