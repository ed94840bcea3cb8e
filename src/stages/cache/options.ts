// The cache stage's options: their JSON Schema, with the defaults, and their type.
// linedns.schema.json is generated from the schema (npm run schemas); read at load time.

import type { OptionsSpec } from '../../core/stage.js';

export interface CacheOptions {
  /** Answers kept at most (each type, DO/CD variant and view of a name counts as one). 0: no cache. */
  readonly maxEntries: number;
  readonly minTtl: number;
  readonly maxTtl: number;
  /** Cap on how long NXDOMAIN and NODATA answers are kept (RFC 2308), in seconds. */
  readonly negativeTtl: number;
  /**
   * Seconds past its expiry an upstream answer may still be served, with TTL 30, when the stages
   * after the cache fail to refresh it (RFC 8767 serve-stale). 0: never. Negative answers never.
   */
  readonly staleTtl: number;
  /** Milliseconds a client waits for the refresh of an expired answer before it gets the stale one. */
  readonly staleClientTimeout: number;
  /** Seconds after a failed refresh during which the stale answer is served without asking again. */
  readonly staleRefreshInterval: number;
  /** Hits within an answer's lifetime that make it refreshed before it expires; 0: no prefetch. */
  readonly prefetch: number;
  /** Percent of its TTL left when such an answer is refreshed. */
  readonly prefetchPercent: number;
}

const SECONDS = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;

export const cacheOptions: OptionsSpec<CacheOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      maxEntries: { description: 'Answers kept at most; 0 turns the cache off.', type: 'integer', minimum: 0, maximum: 100000000, default: 100000 },
      minTtl: { ...SECONDS, description: 'Seconds: upstream TTLs below it are raised to it.', default: 0 },
      maxTtl: { ...SECONDS, description: 'Seconds: upstream TTLs above it are lowered to it.', default: 86400 },
      negativeTtl: { ...SECONDS, description: 'Seconds: NXDOMAIN and NODATA answers are kept at most this long.', default: 900 },
      staleTtl: { ...SECONDS, description: 'Seconds past expiry an upstream answer may be served stale (TTL 30) when its refresh fails (RFC 8767); 0 turns serve-stale off.', default: 86400 },
      staleClientTimeout: { description: 'Milliseconds a client waits for the refresh of an expired answer before it gets the stale one; 0: at once.', type: 'integer', minimum: 0, maximum: 60000, default: 1800 },
      staleRefreshInterval: { ...SECONDS, description: 'Seconds after a failed refresh during which the stale answer is served without asking the upstreams again.', default: 30 },
      prefetch: { description: 'Hits within its lifetime that make an answer refreshed in the background before it expires; 0 turns prefetch off.', type: 'integer', minimum: 0, maximum: 1000000000, default: 0 },
      prefetchPercent: { description: 'Percent of its TTL left when a prefetched answer is refreshed.', type: 'integer', minimum: 1, maximum: 99, default: 10 },
    },
  },
  topLevel: { cache: '.' },
  check(o, report) {
    if (o.minTtl > o.maxTtl) report(['minTtl'], 'LDNS_CACHE_TTL_ORDER', `minTtl ${o.minTtl} is above maxTtl ${o.maxTtl}; expected minTtl <= maxTtl`);
  },
};
