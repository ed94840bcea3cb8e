// Unpredictable query IDs from a buffered CSPRNG, so each ID costs a read, not a syscall.
// Unpredictable IDs and source ports are the anti-spoofing defence (RFC 5452).

import { randomFillSync } from 'node:crypto';

const pool = Buffer.allocUnsafe(4096);
let pos = pool.length;

export function randomU16(): number {
  if (pos + 2 > pool.length) {
    randomFillSync(pool);
    pos = 0;
  }
  const v = (pool[pos]! << 8) | pool[pos + 1]!;
  pos += 2;
  return v;
}

/** A random integer in [0, n) for small n (n <= 65536); the bias is negligible for our uses. */
export function randomBelow(n: number): number {
  return randomU16() % n;
}
