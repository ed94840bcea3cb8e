// cache stage: answers from stored replies (wire templates, TTLs aged per hit) and stores what
// the stages after it answered, with RFC 2308 negative caching and TTL clamps. Line-aware, so it
// may come first: an answer that depended on the client's view is stored under that view's id
// (as HTTP's Vary), every other answer is shared.

import { LRUCache } from 'lru-cache';
import { Flag, QClass, QType, Rcode } from '../../lib/dns/constants.js';
import { Section } from '../../lib/dns/message.js';
import type { ParsedQuery } from '../../lib/dns/query.js';
import { clampTemplateTtls, minSectionTtl, renderTemplate, renderWire, templateTtl, type ScannedTemplate, type WireTemplate } from '../../lib/dns/template.js';
import { wholeSeconds } from '../../lib/clock.js';
import type { QueryContext } from '../../core/context.js';
import type { RuntimeConfig } from '../../config/types.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { cacheOptions, type CacheOptions } from './options.js';
import { purgeFor, purges } from './purge.js';

/**
 * The answer behind `ctx.response`, left by the stage that made it so the cache can keep it:
 * local data (kept with its own TTLs until a reload) or a validated upstream reply (aged). The
 * cache keeps it only while `response` is still the one it names: a later stage that replaced
 * the reply made its own answer, which the cache knows nothing about.
 */
export type CacheableAnswer =
  | { readonly local: true; readonly template: WireTemplate; readonly response: Buffer }
  | { readonly local: false; readonly template: ScannedTemplate; readonly response: Buffer };

declare module '../../core/context.js' {
  interface Slots {
    cacheable: CacheableAnswer;
    /**
     * Set (true) by a stage whose decision for this query depended on the client's view: it
     * found local data with labels, shown or hidden. The answer, local or from upstream, is then
     * this view's alone and is stored under it (HTTP's Vary).
     */
    variesByView: boolean;
  }
}

/**
 * One cached reply. Kept small, as a million of them must fit in a few hundred MB: the wire as
 * a latin1 string, whole seconds (small integers, not boxed doubles), and the other variants of
 * the same name (type, DO, CD) chained through `next` rather than held in an array.
 */
interface Entry {
  /** qtype plus the DO and CD bits, which change what an upstream returns. */
  code: number;
  wire: string;
  ttlOffsets: readonly number[];
  /** Whole seconds since the cache stage started: when stored, and when it expires. */
  storedAt: number;
  expiresAt: number;
  /** SHARED, or the id of the view (NO_VIEW: unclassified) the answer was made for. */
  view: number;
  /** A local answer: served with its configured TTLs (no countdown) until a reload drops it. */
  local: boolean;
  next: Entry | null;
}

/** Entry.view of an answer every client gets alike. */
const SHARED = -1;
/** Entry.view of an answer for a client no classifier classified. */
const NO_VIEW = -2;
/** Entry.expiresAt of local answers: they live until a reload that changes local data. */
const NEVER = 2 ** 31;
/** Not classified yet in this lookup (no view-keyed entry seen so far). */
const UNCLASSIFIED = -3;

/** The client's view id, classified now if no stage asked yet. */
function viewOf(ctx: QueryContext): number {
  const lines = ctx.lines;
  return lines === null ? NO_VIEW : lines.id;
}

/**
 * The cache is keyed by the lower-cased name (a string the decode stage already built and the
 * records stage already hashed), then by `variant()`, then by view; class IN only. Upstream
 * queries carry no client subnet or cookie, so the view is the only client-specific part: an
 * answer is stored under the client's view id when it depended on the view (a local answer from
 * labelled data, or an upstream answer for a name with local data hidden from this view), and
 * shared otherwise. A lookup classifies the client only when the name holds a view-keyed entry.
 */
export function variant(q: ParsedQuery): number {
  return q.qtype | (q.edns?.dnssecOk ? 0x10000 : 0) | (q.flags & Flag.CD ? 0x20000 : 0);
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

/**
 * How long a reply may be cached, in seconds (0: not at all), after clamping its TTLs into the
 * configured bounds; `clamped` tells whether any TTL the client would see changed.
 */
export function cacheLifetime(t: ScannedTemplate, cfg: CacheOptions): { lifetime: number; clamped: boolean } {
  const answers = minSectionTtl(t, Section.Answer);
  if (t.rcode === Rcode.NOERROR && answers !== undefined) {
    const clamped = clampTemplateTtls(t, cfg.minTtl, cfg.maxTtl);
    return { lifetime: Math.min(cfg.maxTtl, Math.max(cfg.minTtl, answers)), clamped };
  }
  if (t.rcode === Rcode.NXDOMAIN || t.rcode === Rcode.NOERROR) {
    const neg = negativeTtl(t);
    if (neg === null) return { lifetime: 0, clamped: false };
    const ttl = Math.min(neg, cfg.negativeTtl);
    return { lifetime: ttl, clamped: clampTemplateTtls(t, 0, ttl) };
  }
  return { lifetime: 0, clamped: false };
}

/** Answers kept per name (type, DO, CD variants) at most. */
const MAX_VARIANTS = 32;

function chainLength(e: Entry): number {
  let n = 0;
  for (let c: Entry | null = e; c !== null; c = c.next) n++;
  return n;
}

function newLru(maxEntries: number): LRUCache<string, Entry> {
  // Sized in answers, not names: a name weighs as many entries as its chain holds.
  return new LRUCache<string, Entry>({ maxSize: Math.max(1, maxEntries), sizeCalculation: chainLength });
}

function createCacheStage(options: CacheOptions, env: StageEnv): Stage<CacheOptions> {
  let cfg = options;
  let lru = newLru(cfg.maxEntries);
  const hits = env.metrics.counter('cache_hits_total', 'answers served from the cache');
  const misses = env.metrics.counter('cache_misses_total', 'cache lookups that went further');
  const stored = env.metrics.counter('cache_stores_total', 'upstream replies stored');
  const entries = env.metrics.counter('cache_entries', 'answers held in the cache now');
  // A gauge: a cache built by a reload that changed the stages starts empty, whatever the one it
  // replaces held.
  entries.value = 0;

  // What the stored answers were made from: a reload drops those its new data may change.
  let current: RuntimeConfig = env.config;

  function store(ctx: QueryContext, code: number): void {
    const q = ctx.query!;
    const now = wholeSeconds(ctx.receivedAt);
    // Candidates from the records stage whose visibility depends on lines: the answer, local or
    // upstream (this view sees none of the name's local records), is this view's alone.
    const answer = ctx.get('cacheable');
    if (answer === undefined || answer.response !== ctx.response) return;
    const view = ctx.get('variesByView') === true ? viewOf(ctx) : SHARED;
    if (answer.local) {
      const t = answer.template;
      put(q.name, { code, wire: t.buf.toString('latin1'), ttlOffsets: t.ttlOffsets, storedAt: now, expiresAt: NEVER, view, local: true, next: null }, now);
      return;
    }
    const reply = answer.template;
    const { lifetime, clamped } = cacheLifetime(reply, cfg);
    // The reply was rendered before clamping: render again if this client would see other TTLs.
    if (clamped) ctx.response = renderTemplate(reply, ctx.raw, q, 0);
    if (lifetime <= 0) return;
    put(q.name, { code, wire: reply.buf.toString('latin1'), ttlOffsets: reply.ttlOffsets, storedAt: now, expiresAt: now + lifetime, view, local: false, next: null }, now);
    stored.value++; // upstream replies only, as its name says: local answers are ours anyway
  }

  function put(name: string, entry: Entry, now: number): void {
    const code = entry.code;
    const view = entry.view;
    // Looked up again even when the lookup before forwarding found nothing: clients ask A and
    // AAAA at once, and the sibling stored meanwhile must stay in the chain.
    let rest = lru.get(name) ?? null;
    // Drop the variant being replaced and any expired one from the chain.
    // At most MAX_VARIANTS per name, so a client cycling through qtypes cannot make chains long.
    let kept: Entry | null = null;
    let n = 1;
    for (let c = rest; c !== null && n < MAX_VARIANTS; c = c.next) {
      if ((c.code !== code || c.view !== view) && c.expiresAt > now) {
        kept = { ...c, next: kept };
        n++;
      }
    }
    entry.next = kept;
    lru.set(name, entry); // set again so the LRU re-weighs the chain
    entries.value = lru.calculatedSize;
  }

  return {
    name: 'cache',
    handle(ctx, next) {
      const q = ctx.query!;
      if (cfg.maxEntries === 0 || q.qclass !== QClass.IN) return next();
      const code = variant(q);
      let view = UNCLASSIFIED;
      for (let e: Entry | null = lru.get(q.name) ?? null; e !== null; e = e.next) {
        if (e.code !== code) continue;
        if (e.view !== SHARED) {
          if (view === UNCLASSIFIED) view = viewOf(ctx);
          if (e.view !== view) continue;
        }
        const now = wholeSeconds(ctx.receivedAt);
        if (now < e.expiresAt) {
          if (ctx.tracing) ctx.note(`cache: hit (${e.view === SHARED ? 'shared' : `view of lines [${ctx.lines?.lines.join(', ') ?? ''}]`}, ${e.local ? 'local' : `stored ${now - e.storedAt} s ago, ${e.expiresAt - now} s left`})`);
          hits.value++;
          ctx.reusable = hits;
          ctx.respond('cache', renderWire(e.wire, e.ttlOffsets, ctx.raw, q, e.local ? 0 : now - e.storedAt));
          return;
        }
      }
      misses.value++;
      if (ctx.tracing) ctx.note('cache: miss');
      const r = next();
      if (r) return r.then(() => store(ctx, code));
      store(ctx, code);
    },
    reload(config, options) {
      const old = lru;
      cfg = options;
      lru = newLru(cfg.maxEntries);
      // Only the names whose answers the new local data or lines may change (purge.ts).
      const purge = purgeFor(current, config);
      current = config;
      // maxEntries 0 turns the cache off: nothing is kept (the LRU's size is at least 1).
      if (purge.all || cfg.maxEntries === 0) {
        if (old.calculatedSize > 0) env.logger.info({ dropped: old.calculatedSize, kept: 0 }, 'cache: reload dropped every entry');
        entries.value = 0;
        return;
      }
      // Keep what is still valid; a smaller maxEntries keeps the most recently used.
      let dropped = 0;
      for (const [k, v] of [...old.entries()].reverse()) {
        if (purges(purge, k)) dropped += chainLength(v);
        else lru.set(k, v);
      }
      entries.value = lru.calculatedSize;
      if (dropped > 0) env.logger.info({ dropped, kept: lru.calculatedSize, names: purge.names.size, subtrees: purge.subtrees.size }, 'cache: reload dropped the answers its new local data may change');
    },
    // For the admin endpoint (/cache, POST /cache/flush): off the query path.
    admin: {
      stats: () => ({ entries: lru.calculatedSize, hits: hits.value, misses: misses.value, stores: stored.value }),
      flush(name) {
        let n: number;
        if (name === undefined) {
          n = lru.calculatedSize;
          lru.clear();
        } else {
          // Keyed as decode spells a name: lower case, no trailing dot ("." for the root).
          const key = name === '.' || name === '' ? '.' : name.toLowerCase().replace(/\.$/, '');
          const e = lru.get(key);
          n = e === undefined ? 0 : chainLength(e);
          lru.delete(key);
        }
        entries.value = lru.calculatedSize;
        return n;
      },
    },
  };
}

export const cacheStage: StageDefinition<CacheOptions> = {
  name: 'cache',
  summary: 'answers repeats from stored replies, per view when they depended on it; stores what the stages after it answered',
  options: cacheOptions,
  requires: [{ name: 'query', where: 'before', reason: 'it looks up the decoded question' }],
  memoSafe: true,
  create: createCacheStage,
};
