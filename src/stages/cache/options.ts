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
    },
  },
  topLevel: { cache: '.' },
  check(o, report) {
    if (o.minTtl > o.maxTtl) report(['minTtl'], 'LDNS_CACHE_TTL_ORDER', `minTtl ${o.minTtl} is above maxTtl ${o.maxTtl}; expected minTtl <= maxTtl`);
  },
};
