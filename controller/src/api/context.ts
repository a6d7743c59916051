import type { Logger } from "../log.js";
import type { Images } from "../images/images.js";
import type { Agents } from "../machines/agents.js";
import type { Lifecycle } from "../machines/lifecycle.js";
import type { PowerDriverRegistry } from "../power/driver.js";
import type { Db } from "../store/db.js";
import type { Store } from "../store/store.js";
import type { Metrics } from "./metrics.js";

/** What the API's handlers are given; built once by the daemon. */
export interface ApiContext {
  db: Db;
  store: Store;
  images: Images;
  lifecycle: Lifecycle;
  agents: Agents;
  power: PowerDriverRegistry;
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
