import type { Clock } from "../../src/clock.js";
import { systemClock } from "../../src/clock.js";

/** Real time, but every sleep is 1000 times shorter; requested durations are recorded. */
export function fastClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => Date.now(),
    sleep: (ms, signal) => {
      sleeps.push(ms);
      return systemClock.sleep(ms / 1000, signal);
    },
  };
}
