// Time is injected: the agent's loops, retries and timeouts take a Clock so tests run them
// without sleeping.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/**
 * A clock that never waits: sleep() advances its time at once and records the request. For
 * tests of retry and heartbeat timing.
 */
export function fakeClock(
  start = 1_700_000_000_000,
): Clock & { sleeps: number[]; advance(ms: number): void } {
  let t = start;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
    async sleep(ms, signal) {
      if (signal?.aborted) throw signal.reason as Error;
      sleeps.push(ms);
      t += ms;
      await Promise.resolve();
    },
  };
}

/** Random source in [0, 1); injected so jitter is testable. */
export type Random = () => number;
