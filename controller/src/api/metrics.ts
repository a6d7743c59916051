// Prometheus metrics on a registry of the daemon's own (not the global one), so that two
// controllers in one test process do not share counters.
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "weft_" });
  return {
    registry,
    httpRequests: new Counter({
      name: "weft_http_requests_total",
      help: "API requests by method, route and status",
      labelNames: ["method", "route", "status"] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: "weft_http_request_duration_seconds",
      help: "API request duration",
      labelNames: ["method", "route"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    authFailures: new Counter({
      name: "weft_auth_failures_total",
      help: "Requests refused for a missing or wrong token",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;
