// cache stage: answers from stored upstream replies (wire templates, TTLs aged per hit) and
// stores what the forward stage brings back, with RFC 2308 negative caching and TTL clamps.

import { LRUCache } from 'lru-cache';
import { Flag, QClass, QType, Rcode } from '../dns/constants.js';
import { Section } from '../dns/message.js';
import type { ParsedQuery } from '../dns/query.js';
import { clampTemplateTtls, minSectionTtl, renderTemplate, templateTtl, type ScannedTemplate, type WireTemplate } from '../dns/template.js';
import type { CacheConfig } from '../config/types.js';
import type { QueryContext } from '../pipeline/context.js';
import type { Stage, StageFactory } from '../pipeline/stage.js';

interface Entry {
  template: WireTemplate;
  /** Seconds (performance.now() / 1000) when stored, and when it expires. */
  storedAt: number;
  expiresAt: number;
}

/**
 * Key: lower-cased name, type, class and the DO and CD bits, which change what an upstream
 * returns. Nothing client-specific: only upstream answers are cached, and upstream queries
 * carry no client subnet, so one client's answer is every client's answer.
 */
export function cacheKey(q: ParsedQuery): string {
  const bits = (q.edns?.dnssecOk ? 1 : 0) | (q.flags & Flag.CD ? 2 : 0);
  return `${q.name}\u0000${q.qtype}\u0000${q.qclass}\u0000${bits}`;
}

/** RFC 2308 section 5: a negative answer lives min(SOA TTL, SOA MINIMUM); null if no SOA. */
function negativeTtl(t: ScannedTemplate): number | null {
  for (let i = 0; i < t.records.length; i++) {
    const r = t.records[i]!;
    if (r.section !== Section.Authority || r.type !== QType.SOA || r.rdLength < 20) continue;
    const minimum = t.buf.readUInt32BE(r.rdStart + r.rdLength - 4);
    return Math.min(templateTtl(t, i), minimum);
  }
  return null;
}

/** How long a reply may be cached, in seconds; 0 when it must not be. Clamps its TTLs too. */
export function cacheLifetime(t: ScannedTemplate, cfg: CacheConfig): number {
  const answers = minSectionTtl(t, Section.Answer);
  if (t.rcode === Rcode.NOERROR && answers !== undefined) {
    clampTemplateTtls(t, cfg.minTtl, cfg.maxTtl);
    return Math.min(cfg.maxTtl, Math.max(cfg.minTtl, answers));
  }
  if (t.rcode === Rcode.NXDOMAIN || t.rcode === Rcode.NOERROR) {
    const neg = negativeTtl(t);
    if (neg === null) return 0;
    const ttl = Math.min(neg, cfg.negativeTtl);
    clampTemplateTtls(t, 0, ttl);
    return ttl;
  }
  return 0;
}

export const createCacheStage: StageFactory = (_options, env): Stage => {
  let cfg = env.config.cache;
  let lru = new LRUCache<string, Entry>({ max: Math.max(1, cfg.maxEntries) });
  const hits = env.metrics.counter('cache_hits_total', 'answers served from the cache');
  const misses = env.metrics.counter('cache_misses_total', 'cache lookups that went further');
  const stored = env.metrics.counter('cache_stores_total', 'upstream replies stored');

  function store(ctx: QueryContext, key: string): void {
    const reply = ctx.upstreamReply;
    if (reply === null || ctx.answeredBy !== 'forward') return;
    const lifetime = cacheLifetime(reply, cfg);
    // The reply was rendered before clamping; render again so this client sees the clamped TTLs.
    ctx.response = renderTemplate(reply, ctx.raw, ctx.query!, 0);
    if (lifetime <= 0) return;
    const now = ctx.receivedAt / 1000;
    lru.set(key, { template: { buf: reply.buf, questionEnd: reply.questionEnd, ttlOffsets: reply.ttlOffsets }, storedAt: now, expiresAt: now + lifetime });
    stored.value++;
  }

  return {
    name: 'cache',
    handle(ctx, next) {
      const q = ctx.query!;
      if (cfg.maxEntries === 0 || q.qclass !== QClass.IN) return next();
      const key = cacheKey(q);
      const e = lru.get(key);
      if (e !== undefined) {
        const now = ctx.receivedAt / 1000;
        if (now < e.expiresAt) {
          hits.value++;
          ctx.respond('cache', renderTemplate(e.template, ctx.raw, q, Math.floor(now - e.storedAt)));
          return;
        }
        lru.delete(key);
      }
      misses.value++;
      const r = next();
      if (r) return r.then(() => store(ctx, key));
      store(ctx, key);
    },
    reload(config) {
      const old = lru;
      cfg = config.cache;
      lru = new LRUCache<string, Entry>({ max: Math.max(1, cfg.maxEntries) });
      // Keep what is still valid; a smaller maxEntries keeps the most recently used.
      for (const [k, v] of [...old.entries()].reverse()) lru.set(k, v);
    },
  };
};
