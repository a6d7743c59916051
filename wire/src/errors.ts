import { z } from "zod";

/** Every API error body: a coarse type, a stable code to branch on, and a human message. */
export const ApiErrorBody = z.object({
  type: z.enum([
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "unavailable",
    "internal",
  ]),
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional(),
});
export type ApiErrorBody = z.infer<typeof ApiErrorBody>;
export type ApiErrorType = ApiErrorBody["type"];
