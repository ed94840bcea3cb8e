// The cache's whole-second clock for tests that wait for an entry to expire: waits for a second
// to start, so the few queries after it fall in one second whatever the machine's speed.

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { wholeSeconds } from '../../src/lib/clock.js';

/** The second the cache would count a query arriving now in. */
export function cacheSecond(): number {
  return wholeSeconds(performance.now());
}

/** Waits until the cache's clock reaches `second` (or the next second when not given), at most 3 s. */
export async function secondStarts(second = cacheSecond() + 1): Promise<number> {
  const limit = performance.now() + 3000;
  while (cacheSecond() < second) {
    if (performance.now() > limit) throw new Error(`second ${second} did not start within 3 s`);
    await sleep(2);
  }
  return cacheSecond();
}

/** Waits (polling, at most `ms`) until `cond` holds; fails with `what` otherwise. */
export async function eventually(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const limit = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > limit) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(5);
  }
}
