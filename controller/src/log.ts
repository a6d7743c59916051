// JSON logs. Context (request id, machine id, MAC, transaction id) is bound once with child().
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

export function createLogger(level: string, dest?: DestinationStream): Logger {
  return pino({ level, base: { svc: "weft-controller" }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
