// A "certainly not here" test for names: a bitset indexed by two hashes of the name, so the
// common question (a name with no local data) costs one memory access instead of a Map probe.

import { fnv1a } from '../../lib/fnv.js';

/**
 * A Bloom filter with two probes taken from one 32-bit hash. False positives only cost the Map
 * lookup the filter saves; a false negative cannot happen, since every added name sets its bits.
 */
export class NameFilter {
  private readonly bits: Uint32Array;
  private readonly mask: number;

  /** `expected`: names that will be added; the table holds about 16 bits per name. */
  constructor(expected: number) {
    let size = 1 << 16;
    while (size < expected * 16 && size < 1 << 28) size *= 2;
    this.bits = new Uint32Array(size >>> 5);
    this.mask = size - 1;
  }

  add(name: string): void {
    const h = fnv1a(name);
    const a = h & this.mask;
    const b = ((h >>> 16) | (h << 16)) & this.mask;
    this.bits[a >>> 5]! |= 1 << (a & 31);
    this.bits[b >>> 5]! |= 1 << (b & 31);
  }

  mayContain(name: string): boolean {
    const h = fnv1a(name);
    const a = h & this.mask;
    if ((this.bits[a >>> 5]! & (1 << (a & 31))) === 0) return false;
    const b = ((h >>> 16) | (h << 16)) & this.mask;
    return (this.bits[b >>> 5]! & (1 << (b & 31))) !== 0;
  }
}
