// ratelimit stage: optional token bucket per client prefix (off unless `rateLimit` is set);
// over-limit queries get REFUSED or are dropped, and are counted.

import { growingLru } from '../../lib/lru.js';
import { Rcode } from '../../lib/dns/constants.js';
import { parseIp } from '../../lib/net/address.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { rateLimitOptions, type RateLimitOptions } from './options.js';

interface Bucket {
  tokens: number;
  last: number;
}

/** The client's address cut to the configured prefix, as a map key. */
function prefixKey(address: string, v4: number, v6: number): string {
  const bytes = parseIp(address);
  if (bytes === null) return address;
  const bits = bytes.length === 4 ? v4 : v6;
  let key = bytes.length === 4 ? '4:' : '6:';
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    key += (bytes[i]! & (0xff << (8 - keep))).toString(16) + '.';
  }
  return key;
}

/** The limits in force: burst resolved. */
type Limit = RateLimitOptions & { readonly burst: number };

function limitOf(o: RateLimitOptions | null): Limit | null {
  return o === null ? null : { ...o, burst: o.burst ?? Math.max(1, Math.ceil(o.qps * 2)) };
}

function createRateLimitStage(options: RateLimitOptions | null, env: StageEnv): Stage<RateLimitOptions | null> {
  let limit = limitOf(options);
  let buckets = growingLru<string, Bucket>(limit?.maxClients ?? 1);
  const limited = env.metrics.counter('ratelimit_limited_total', 'queries over the per-client rate limit');
  return {
    name: 'ratelimit',
    handle(ctx, next) {
      if (limit === null) return next();
      const now = ctx.receivedAt / 1000;
      const key = prefixKey(ctx.client.address, limit.ipv4Prefix, limit.ipv6Prefix);
      let b = buckets.get(key);
      if (b === undefined) {
        b = { tokens: limit.burst, last: now };
        buckets.set(key, b);
      } else {
        b.tokens = Math.min(limit.burst, b.tokens + (now - b.last) * limit.qps);
        b.last = now;
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return next();
      }
      limited.value++;
      if (limit.action === 'drop') {
        ctx.dropReason = 'rate limited';
        return;
      }
      ctx.respondError('ratelimit', Rcode.REFUSED);
    },
    reload(_config, o) {
      const before = limit;
      limit = limitOf(o);
      // Buckets are kept across a reload (a SIGHUP for new records must not hand every client a
      // full burst); a new rate or burst applies from their next query, as handle() clamps to
      // the burst. Only a change of what a key means (the prefixes) or of the table's size
      // starts them afresh.
      const sameKeys = before !== null && limit !== null && before.ipv4Prefix === limit.ipv4Prefix && before.ipv6Prefix === limit.ipv6Prefix && before.maxClients === limit.maxClients;
      if (!sameKeys) buckets = growingLru<string, Bucket>(limit?.maxClients ?? 1);
    },
  };
}

export const rateLimitStage: StageDefinition<RateLimitOptions | null> = {
  name: 'ratelimit',
  summary: 'token buckets per client prefix: over-limit queries get REFUSED or are dropped (off unless `qps` is set)',
  options: rateLimitOptions,
  requires: [{ name: 'query', where: 'before', reason: 'a refusal echoes the decoded question' }],
  // Every query must reach the buckets to be counted: a memo answer would bypass the limit.
  memoSafe: (o) => o === null,
  create: createRateLimitStage,
};
