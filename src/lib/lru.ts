// An LRU bounded by entry count that grows as it fills, for memos that stay small on most hosts.
// lru-cache's `max` preallocates its arrays for `max` entries up front (about 1.2 MB at 50,000).

import { LRUCache } from 'lru-cache';

const one = (): number => 1;

/**
 * At most `entries` entries, least recently used dropped first, with no memory reserved ahead:
 * a `maxSize` in which every entry weighs 1 is the same bound without the preallocation.
 */
export function growingLru<K extends {}, V extends {}>(entries: number): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: entries, sizeCalculation: one });
}
