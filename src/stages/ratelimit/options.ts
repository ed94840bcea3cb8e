// The ratelimit stage's options: their JSON Schema, with the defaults, and their type.
// Off unless a rate is given; linedns.schema.json is generated from the schema (npm run schemas).

import type { OptionsSpec } from '../../core/stage.js';

export interface RateLimitOptions {
  /** Queries a second each client prefix may send, on average. */
  readonly qps: number;
  /** Queries a client prefix may send at once; default twice qps. */
  readonly burst?: number;
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
  readonly action: 'refuse' | 'drop';
  /** Client prefixes tracked at most (least recently seen forgotten first). */
  readonly maxClients: number;
}

export const rateLimitOptions: OptionsSpec<RateLimitOptions | null> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    required: ['qps'],
    properties: {
      qps: { description: 'Queries a second per client prefix, on average.', type: 'number', exclusiveMinimum: 0 },
      burst: { description: 'Queries a client prefix may send at once (default: twice qps).', type: 'integer', minimum: 1 },
      ipv4Prefix: { description: 'IPv4 clients are counted per prefix of this length.', type: 'integer', minimum: 0, maximum: 32, default: 24 },
      ipv6Prefix: { description: 'IPv6 clients are counted per prefix of this length.', type: 'integer', minimum: 0, maximum: 128, default: 56 },
      action: { description: 'What an over-limit query gets: REFUSED, or no answer.', enum: ['refuse', 'drop'], default: 'refuse' },
      maxClients: { description: 'Client prefixes tracked at most.', type: 'integer', minimum: 1, default: 100000 },
    },
  },
  topLevel: { rateLimit: '.' },
  offWhenAbsent: true,
};
