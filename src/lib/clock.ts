// Whole seconds on one process-wide clock. The cache ages TTLs by it and the UDP answer memo
// keeps an answer only for the second it was rendered in, so both must agree when a second starts.

import { performance } from 'node:perf_hooks';

const EPOCH = performance.now();

/** Whole seconds since the process-wide epoch, for a performance.now() reading. Small
 *  integers, so the cache's million entries hold them unboxed. */
export function wholeSeconds(ms: number): number {
  return Math.floor((ms - EPOCH) / 1000);
}
