import type { Logger } from "../log.js";
import type { Db } from "../store/db.js";
import type { Store } from "../store/store.js";
import type { Metrics } from "./metrics.js";

/** What the API's handlers are given; built once by the daemon. */
export interface ApiContext {
  db: Db;
  store: Store;
  log: Logger;
  metrics: Metrics;
  version: string;
  startedAt: Date;
  /** Addresses the API listens on, for `weft status`. */
  listeners: string[];
  migrations: number;
  /** Aborted on shutdown: long-lived responses (event streams) end with it. */
  shutdown: AbortSignal;
}
