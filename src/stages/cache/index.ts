// cache stage: answers from stored replies (wire templates, TTLs aged per hit) and stores what
// the stages after it answered, with RFC 2308 negative caching and TTL clamps. Line-aware, so it
// may come first: an answer that depended on the client's view is stored under that view's id
// (as HTTP's Vary), every other answer is shared. Expired upstream answers are kept for
// serve-stale (RFC 8767) and busy ones refreshed before they expire (prefetch), both on a fork
// of the query that the stages after the cache answer in the background.

import { LRUCache } from 'lru-cache';
import { Flag, QClass, QType, Rcode } from '../../lib/dns/constants.js';
import { Section } from '../../lib/dns/message.js';
import type { ClientSubnet, ParsedQuery } from '../../lib/dns/query.js';
import { clientSubnet, subnetKeyPrefix, subnetMatches } from '../../lib/dns/ecs.js';
import { EdeCode, withEdeOption } from '../../lib/dns/edns-options.js';
import { clampTemplateTtls, minSectionTtl, renderTemplate, renderWire, templateTtl, type ScannedTemplate, type WireTemplate } from '../../lib/dns/template.js';
import { wholeSeconds } from '../../lib/clock.js';
import { performance } from 'node:perf_hooks';
import type { QueryContext } from '../../core/context.js';
import type { RuntimeConfig } from '../../config/types.js';
import type { Next, Stage, StageDefinition, StageEnv } from '../../core/stage.js';
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
  | {
      readonly local: false;
      readonly template: ScannedTemplate;
      readonly response: Buffer;
      /** Valid only for clients in this subnet (RFC 7871 scope; `subnetKey`); absent or null: for all. */
      readonly subnet?: string | null;
    };

declare module '../../core/context.js' {
  interface Slots {
    cacheable: CacheableAnswer;
    /**
     * Set (true) by a stage whose decision for this query depended on the client's view: it
     * found local data with labels, shown or hidden. The answer, local or from upstream, is then
     * this view's alone and is stored under it (HTTP's Vary).
     */
    variesByView: boolean;
    /**
     * Set by the cache when it answered with an expired entry (RFC 8767 serve-stale): why, in
     * words, for logs and observers (the reply's `answeredBy` is 'cache').
     */
    stale: string;
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
  /**
   * null: for every client of its view. Else the upstream answered with a Client Subnet scope
   * (RFC 7871 7.3.1): only for clients whose subnet matches this key (`subnetKey`).
   */
  subnet: string | null;
  next: Entry | null;
  /**
   * Hits since stored, counted while prefetch is on. The one field serve-stale and prefetch add
   * (8 octets an entry): the rest of their state is rare and kept aside (Refresh).
   */
  hits: number;
}

/**
 * What the cache knows of the refreshes of one entry, kept aside (a WeakMap) rather than in every
 * entry, as few entries ever have any: shared by the copies of the entry put() makes.
 */
interface Refresh {
  /** A background refresh (a prefetch, or a stale refresh whose client was answered) is under way. */
  running: boolean;
  /** Until this second, after a refresh failed, the stale answer is served without asking again. */
  recheckAt: number;
}

/**
 * A positive upstream answer (NOERROR with answers), the only kind served stale once expired:
 * negative answers never outlive their TTL, local ones never expire. Read off the stored header.
 */
function mayServeStale(e: Entry): boolean {
  return !e.local && (e.wire.charCodeAt(3) & 0x0f) === Rcode.NOERROR && ((e.wire.charCodeAt(6) << 8) | e.wire.charCodeAt(7)) !== 0;
}

/** Entry.view of an answer every client gets alike. */
const SHARED = -1;
/** Entry.view of an answer for a client no classifier classified. */
const NO_VIEW = -2;
/** Entry.expiresAt of local answers: they live until a reload that changes local data. */
const NEVER = 2 ** 31;
/** Not classified yet in this lookup (no view-keyed entry seen so far). */
const UNCLASSIFIED = -3;

/** A stale answer's reply hook: the OPT linedns writes gets EDE 3, Stale Answer. */
function staleAnswerEde(_ctx: QueryContext, wire: Buffer): Buffer {
  return withEdeOption(wire, EdeCode.STALE_ANSWER);
}

/** The TTL of every record of a stale answer (RFC 8767 section 4 recommends 30 s). */
const STALE_TTL = 30;

/** The client's subnet for matching scoped entries: its believed ECS, else its socket address. */
function subnetOf(ctx: QueryContext): ClientSubnet | null {
  const ecs = ctx.query!.edns?.ecs ?? null;
  return clientSubnet(ctx.client.address, ecs, ecs !== null && ctx.ecsTrusted);
}

/** The client's view id, classified now if no stage asked yet. */
function viewOf(ctx: QueryContext): number {
  const lines = ctx.lines;
  return lines === null ? NO_VIEW : lines.id;
}

/**
 * The cache is keyed by the lower-cased name (a string the decode stage already built and the
 * records stage already hashed), then by `variant()`, then by view and Client Subnet scope; class
 * IN only. An answer is stored under the client's view id when it depended on the view (a local
 * answer from labelled data, or an upstream answer for a name with local data hidden from this
 * view), under a subnet key when the upstream scoped it, and shared otherwise. A lookup
 * classifies the client only when the name holds a view-keyed entry.
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

/** Answers kept per name (type, DO, CD variants, views, Client Subnet scopes) at most. */
const MAX_VARIANTS = 32;
/**
 * Client Subnet scoped answers kept per name and variant at most (RFC 7871 11.3): sources are
 * spoofable, so scoped entries make room among themselves and never push the shared ones out.
 */
const MAX_SCOPED = 16;

/** The order of a chain: the longer Client Subnet scope first (unscoped count as -1, below /0). */
function scopeRank(e: Entry): number {
  return e.subnet === null ? -1 : subnetKeyPrefix(e.subnet);
}

const longestScopeFirst = (a: Entry, b: Entry): number => scopeRank(b) - scopeRank(a);

/** Of `all` (the new entry first), the index of the oldest one `which` accepts, or -1. */
function oldest(all: readonly Entry[], which: (e: Entry) => boolean): number {
  let at = -1;
  // From the end: the chain is newest first, so among equal storedAt the later is older.
  for (let i = all.length - 1; i >= 0; i--) if (which(all[i]!) && (at < 0 || all[i]!.storedAt < all[at]!.storedAt)) at = i;
  return at;
}

function chainLength(e: Entry): number {
  let n = 0;
  for (let c: Entry | null = e; c !== null; c = c.next) n++;
  return n;
}

function lruOf(maxEntries: number, evicted: (e: Entry, key: string, reason: LRUCache.DisposeReason) => void): LRUCache<string, Entry> {
  // Sized in answers, not names: a name weighs as many entries as its chain holds.
  return new LRUCache<string, Entry>({ maxSize: Math.max(1, maxEntries), sizeCalculation: chainLength, dispose: evicted });
}

/** Whether a reply is a SERVFAIL (or too short to say): a refresh that failed. */
function failed(response: Buffer | null): boolean {
  return response === null || response.length < 12 || (response[3]! & 0x0f) === Rcode.SERVFAIL;
}

function createCacheStage(options: CacheOptions, env: StageEnv): Stage<CacheOptions> {
  let cfg = options;
  const hits = env.metrics.counter('cache_hits_total', 'answers served from the cache');
  const misses = env.metrics.counter('cache_misses_total', 'cache lookups that went further');
  const stored = env.metrics.counter('cache_stores_total', 'upstream replies stored');
  const entries = env.metrics.counter('cache_entries', 'answers held in the cache now');
  const staleServed = env.metrics.counter('cache_stale_served_total', 'expired answers served because their refresh failed or was late (RFC 8767)');
  const prefetches = env.metrics.counter('cache_prefetches_total', 'refreshes started before an often asked answer expired');
  const evictions = env.metrics.counter('cache_evictions_total', 'answers dropped to make room (least recently used first)');
  const refreshErrors = env.metrics.counter('cache_refresh_errors_total', 'background refreshes whose storing or answering threw (logged at most once a second)');
  let lastRefreshLog = 0;
  /** A background refresh threw where no engine catches it: counted, and logged at most once a second. */
  function refreshThrew(err: unknown, fork: QueryContext): void {
    refreshErrors.value++;
    const now = Date.now();
    if (now - lastRefreshLog > 1000) {
      lastRefreshLog = now;
      env.logger.error({ err, stage: 'cache', client: fork.client.address, name: fork.query?.name }, 'cache: a background refresh failed');
    }
  }
  // Counted in answers, as maxEntries is; replacements, flushes and reloads are not evictions.
  const onDispose = (e: Entry, _key: string, reason: LRUCache.DisposeReason): void => {
    if (reason === 'evict') evictions.value += chainLength(e);
  };
  function newLru(maxEntries: number): LRUCache<string, Entry> {
    return lruOf(maxEntries, onDispose);
  }
  let lru = newLru(cfg.maxEntries);
  const refreshes = new WeakMap<Entry, Refresh>();
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
      put(q.name, { code, wire: t.buf.toString('latin1'), ttlOffsets: t.ttlOffsets, storedAt: now, expiresAt: NEVER, view, local: true, subnet: null, next: null, hits: 0 }, now);
      return;
    }
    const reply = answer.template;
    const { lifetime, clamped } = cacheLifetime(reply, cfg);
    // The reply was rendered before clamping: render again if this client would see other TTLs.
    if (clamped) ctx.response = renderTemplate(reply, ctx.raw, q, 0);
    if (lifetime <= 0) return;
    const subnet = answer.subnet ?? null;
    put(q.name, { code, wire: reply.buf.toString('latin1'), ttlOffsets: reply.ttlOffsets, storedAt: now, expiresAt: now + lifetime, view, local: false, subnet, next: null, hits: 0 }, now);
    stored.value++; // upstream replies only, as its name says: local answers are ours anyway
  }

  function put(name: string, entry: Entry, now: number): void {
    const code = entry.code;
    const view = entry.view;
    const subnet = entry.subnet;
    // Looked up again even when the lookup before forwarding found nothing: clients ask A and
    // AAAA at once, and the sibling stored meanwhile must stay in the chain.
    const rest = lru.get(name) ?? null;
    // Drop the variant being replaced and any expired one (past staleTtl, for serve-stale) from
    // the chain. The store path (a miss) may allocate: the lookup is what stays lean.
    const all: Entry[] = [entry];
    let scoped = subnet === null ? 0 : 1;
    for (let c = rest; c !== null; c = c.next) {
      if ((c.code !== code || c.view !== view || c.subnet !== subnet) && (c.expiresAt > now || (now - c.expiresAt < cfg.staleTtl && mayServeStale(c)))) {
        all.push(c);
        if (c.subnet !== null && c.code === code) scoped++;
      }
    }
    // At most MAX_SCOPED scoped answers of this variant: the oldest make room (the new one last).
    if (subnet !== null) {
      for (; scoped > MAX_SCOPED; scoped--) all.splice(oldest(all, (c) => c.subnet !== null && c.code === code), 1);
    }
    // At most MAX_VARIANTS per name, so a client cycling through qtypes or spoofing sources cannot
    // make chains long; scoped answers go first (the new one too), then the oldest shared ones.
    while (all.length > MAX_VARIANTS) {
      let at = oldest(all, (c) => c.subnet !== null);
      if (at < 0) at = oldest(all, (c) => c !== entry);
      all.splice(at, 1);
    }
    if (all[0] !== entry) return; // a scoped answer that found no room: not stored
    // Longest scope first (stable: newest first among equals), so the lookup's first fresh
    // match is the longest-prefix one (RFC 7871 7.3.2) without scanning the whole chain.
    all.sort(longestScopeFirst);
    let kept: Entry | null = null;
    for (let i = all.length - 1; i >= 0; i--) {
      const c = all[i]!;
      if (c === entry) {
        c.next = kept;
        kept = c;
        continue;
      }
      const copy: Entry = { ...c, next: kept };
      // A refresh under way, or a recheck window, holds for the copy too.
      const r = refreshes.get(c);
      if (r !== undefined) refreshes.set(copy, r);
      kept = copy;
    }
    lru.set(name, kept!); // set again so the LRU re-weighs the chain
    entries.value = lru.calculatedSize;
  }

  /**
   * What a client that sent ECS learns in its reply about a hit (RFC 7871 scope): the entry's
   * scope when its own ECS was matched against it, and that the answer varied by view.
   */
  function scopeOfHit(ctx: QueryContext, e: Entry): void {
    if (e.subnet !== null && ctx.ecsTrusted) {
      const scope = subnetKeyPrefix(e.subnet);
      if (scope > ctx.ecsScope) ctx.ecsScope = scope;
    }
    if (e.view !== SHARED) ctx.set('variesByView', true);
  }

  /** No refresh of `e` under way, and none failed within staleRefreshInterval: one may start. */
  function idle(e: Entry, now: number): boolean {
    const r = refreshes.get(e);
    return r === undefined || (!r.running && now >= r.recheckAt);
  }

  /** The refresh state of `e`, made on first need. */
  function refreshOf(e: Entry): Refresh {
    let r = refreshes.get(e);
    if (r === undefined) refreshes.set(e, (r = { running: false, recheckAt: 0 }));
    return r;
  }

  /**
   * A refresh of `e` on `fork` ended (`threw`: the stages after the cache threw): stores its
   * answer as a miss would, or starts the failure recheck window. True when it answered.
   */
  function refreshed(fork: QueryContext, e: Entry, code: number, threw: boolean): boolean {
    const r = refreshOf(e);
    r.running = false;
    if (!threw && !failed(fork.response)) {
      store(fork, code);
      return true;
    }
    // RFC 8767's failure recheck timer: the next clients get the stale answer at once.
    r.recheckAt = wholeSeconds(performance.now()) + cfg.staleRefreshInterval;
    return false;
  }

  /**
   * Runs the stages after the cache on `fork` for `e`, answering no one: stores what lands.
   * Returns whether it answered when it ended at once (a stage after answered synchronously),
   * null while it runs.
   */
  function refreshInBackground(fork: QueryContext, e: Entry, next: Next, code: number): boolean | null {
    refreshOf(e).running = true;
    let r: void | Promise<void>;
    try {
      r = next(fork);
    } catch {
      return settled(fork, e, code, true);
    }
    if (!r) return settled(fork, e, code, false);
    r.then(
      () => settled(fork, e, code, false),
      () => settled(fork, e, code, true),
    );
    return null;
  }

  /**
   * refreshed() where nothing would catch its throw (a background refresh; a promise callback,
   * where it would be an unhandled rejection): counted and logged instead; false (not answered).
   */
  function settled(fork: QueryContext, e: Entry, code: number, threw: boolean): boolean {
    try {
      return refreshed(fork, e, code, threw);
    } catch (err) {
      refreshThrew(err, fork);
      const r = refreshOf(e);
      r.running = false;
      r.recheckAt = wholeSeconds(performance.now()) + cfg.staleRefreshInterval;
      return false;
    }
  }

  /** An often asked entry near its end: refreshed in the background, the client already answered. */
  function prefetch(ctx: QueryContext, e: Entry, next: Next, code: number, now: number): void {
    prefetches.value++;
    if (ctx.tracing) ctx.note(`cache: prefetching (${e.hits} hits, ${e.expiresAt - now} of ${e.expiresAt - e.storedAt} s left)`);
    refreshInBackground(ctx.fork(), e, next, code);
  }

  /**
   * Answers with the expired entry `e`, every TTL 30 (OPT aside: it is not in the template), and
   * to a client that sent EDNS an Extended DNS Error "Stale Answer" (RFC 8914 4.4, RFC 8767 6).
   */
  function answerStale(ctx: QueryContext, e: Entry, why: string): void {
    const out = renderWire(e.wire, e.ttlOffsets, ctx.raw, ctx.query!, 0);
    for (let i = 0; i < e.ttlOffsets.length; i++) out.writeUInt32BE(STALE_TTL, e.ttlOffsets[i]!);
    staleServed.value++;
    ctx.set('stale', why);
    if (ctx.query!.edns?.ecs) scopeOfHit(ctx, e);
    if (ctx.query!.edns) ctx.onReply(staleAnswerEde);
    if (ctx.tracing) ctx.note(`cache: stale answer, TTL ${STALE_TTL} (expired ${wholeSeconds(ctx.receivedAt) - e.expiresAt} s ago): ${why}`);
    // Not reusable: the answer memo must not repeat it once a refresh may have landed.
    ctx.respond('cache', out);
  }

  /**
   * The fork's answer came in time for the client: it gets it as the stages after the cache left
   * it (their reply hooks run on it now, as the engine would have run them), or the stale answer
   * when the refresh failed.
   */
  function answerFromFork(ctx: QueryContext, fork: QueryContext, e: Entry, ok: boolean): void {
    if (ctx.trace !== null && fork.trace !== null) for (const n of fork.trace) ctx.note(n);
    if (!ok) {
      answerStale(ctx, e, fork.response === null ? 'the refresh got no answer' : 'the refresh got SERVFAIL');
      return;
    }
    let response: Buffer | null = fork.response;
    const hooks = fork.hooks;
    try {
      if (hooks !== null) for (let i = hooks.length - 1; i >= 0 && response !== null; i--) response = hooks[i]!(fork, response);
    } catch {
      response = null;
    }
    if (response === null) return answerStale(ctx, e, 'the refresh answer was dropped');
    // What the answer depended on travels with it: the scope the fork learnt (its own ECS, as
    // the fork trusts what the client's classification trusted) and whether it varied by view,
    // which decode's reply hook on the client's context turns into the reply's scope.
    if (fork.ecsScope > ctx.ecsScope) ctx.ecsScope = fork.ecsScope;
    if (fork.get('variesByView') === true) ctx.set('variesByView', true);
    ctx.respond(fork.answeredBy, response);
  }

  /**
   * A lookup found only the expired entry `e`, still within staleTtl: refresh it on a fork, and
   * answer with what lands, or with `e` (TTL 30) when the refresh fails or takes longer than
   * staleClientTimeout, the refresh then going on in the background. Within the recheck window
   * after a failed refresh, or while a background refresh is under way, `e` is answered at once.
   */
  function expired(ctx: QueryContext, e: Entry, next: Next, code: number, now: number): void | Promise<void> {
    const state = refreshes.get(e);
    if (state !== undefined) {
      if (now < state.recheckAt) return answerStale(ctx, e, `a refresh failed less than ${cfg.staleRefreshInterval} s ago`);
      if (state.running) return answerStale(ctx, e, 'a refresh is under way');
    }
    misses.value++;
    if (ctx.tracing) ctx.note(`cache: expired ${now - e.expiresAt} s ago; refreshing, with the stale answer kept in case it fails`);
    const fork = ctx.fork();
    if (cfg.staleClientTimeout === 0) {
      const ended = refreshInBackground(fork, e, next, code);
      if (ended !== null) return answerFromFork(ctx, fork, e, ended);
      return answerStale(ctx, e, 'staleClientTimeout is 0: refreshing in the background');
    }
    let r: void | Promise<void>;
    try {
      r = next(fork);
    } catch {
      return answerFromFork(ctx, fork, e, refreshed(fork, e, code, true));
    }
    if (!r) return answerFromFork(ctx, fork, e, refreshed(fork, e, code, false));
    const running = r;
    return new Promise<void>((resolve, reject) => {
      let answered = false;
      const timer = setTimeout(() => {
        if (answered) return;
        answered = true;
        // From here on the refresh is a background one: the client's context is left alone.
        refreshOf(e).running = true;
        answerStale(ctx, e, `no answer within staleClientTimeout (${cfg.staleClientTimeout} ms); refreshing in the background`);
        resolve();
      }, cfg.staleClientTimeout);
      const land = (threw: boolean): void => {
        const ok = settled(fork, e, code, threw);
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        // A throw here is the client's own query failing: the engine answers SERVFAIL for it.
        try {
          answerFromFork(ctx, fork, e, ok);
          resolve();
        } catch (err) {
          reject(err);
        }
      };
      running.then(
        () => land(false),
        () => land(true),
      );
    });
  }

  return {
    name: 'cache',
    handle(ctx, next) {
      const q = ctx.query!;
      if (cfg.maxEntries === 0 || q.qclass !== QClass.IN) return next();
      const code = variant(q);
      let view = UNCLASSIFIED;
      // The client's subnet, worked out at the first entry kept per Client Subnet scope.
      let subnet: ClientSubnet | null | undefined;
      const now = wholeSeconds(ctx.receivedAt);
      // Chains hold the longest Client Subnet scope first (put()): the first fresh entry that
      // matches is the longest-prefix match (RFC 7871 7.3.2). An expired one is kept aside, to be
      // served stale only when no fresh one matches.
      let stale: Entry | null = null;
      for (let e: Entry | null = lru.get(q.name) ?? null; e !== null; e = e.next) {
        if (e.code !== code) continue;
        if (e.view !== SHARED) {
          if (view === UNCLASSIFIED) view = viewOf(ctx);
          if (e.view !== view) continue;
        }
        if (e.subnet !== null) {
          if (subnet === undefined) subnet = subnetOf(ctx);
          if (subnet === null || !subnetMatches(e.subnet, subnet)) continue;
        }
        if (now < e.expiresAt) {
          if (ctx.tracing) ctx.note(`cache: hit (${e.view === SHARED ? 'shared' : `view of lines [${ctx.lines?.lines.join(', ') ?? ''}]`}${e.subnet === null ? '' : `, client subnet scope /${subnetKeyPrefix(e.subnet)}`}, ${e.local ? 'local' : `stored ${now - e.storedAt} s ago, ${e.expiresAt - now} s left`})`);
          hits.value++;
          ctx.reusable = hits;
          if (q.edns?.ecs) scopeOfHit(ctx, e);
          ctx.respond('cache', renderWire(e.wire, e.ttlOffsets, ctx.raw, q, e.local ? 0 : now - e.storedAt));
          // Prefetch: with it off, one comparison; on, one increment, and the rest only once
          // the entry was asked often enough (a local entry's NEVER never comes near its end).
          const every = cfg.prefetch;
          if (every !== 0 && ++e.hits >= every && (e.expiresAt - now) * 100 <= (e.expiresAt - e.storedAt) * cfg.prefetchPercent && idle(e, now)) prefetch(ctx, e, next, code, now);
          return;
        }
        if (stale === null && now - e.expiresAt < cfg.staleTtl && mayServeStale(e)) stale = e;
      }
      if (stale !== null) return expired(ctx, stale, next, code, now);
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
  provides: ['stale'],
  memoSafe: true,
  create: createCacheStage,
};
