// URL sources: fetches each http(s) document the config names (conditionally, ETag and
// Last-Modified), polls them with jitter, and keeps the last good copy of each on disk.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SourceDocument, SourceDocuments } from '../config/sources.js';
import type { RuntimeConfig, SourcesConfig } from '../config/types.js';
import { failureLines, sourcePlan, type ConfigIssue, type ConfigOverrides } from '../config/load.js';
import { Metrics } from '../lib/metrics.js';
import { loadConfig, reloadConfig } from './config.js';
import { goldenGate } from './golden.js';

/** One failure is logged at once; the same URL failing again is logged at most this often. */
export const FAILURE_LOG_MS = 60_000;

/** A document as fetched, with what a conditional request needs to ask "changed since?". */
interface Copy {
  readonly bytes: Buffer;
  readonly etag: string | null;
  readonly lastModified: string | null;
}

interface SourceState {
  /** The copy the running configuration was built from (also on disk); null before any. */
  good: Copy | null;
  /** The newest copy fetched, when it differs from `good` and has not been refused. */
  fresh: Copy | null;
  /** Validators of the newest body seen, refused or not: a refused document is not fetched again until it changes. */
  etag: string | null;
  lastModified: string | null;
  /** Why the last fetch failed (null: it did not); what the loader says when there is no copy either. */
  failure: string | null;
  loggedAt: number;
  /** Whether a fetch has been tried since this process started. */
  fetched: boolean;
  /** The last document refused: served again (by a server without validators), it is no news. */
  refused: Buffer | null;
}

/** The outcome of one fetch, as the poller counts it. */
export type FetchOutcome = 'new' | 'unchanged' | 'failed';

function fileBase(url: string): string {
  return createHash('sha256').update(url).digest('hex').slice(0, 24);
}

/**
 * The URL sources of one configuration. `documents()` is what a load reads: the fresh copy of
 * each URL, else its last good one. After a load, `accepted` (saved to disk) or `refused` (kept
 * out of later loads until the repository serves another document) says how it went.
 */
export class SourceSet {
  private readonly states = new Map<string, SourceState>();
  private urls: readonly string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private onChange: (() => void) | null = null;
  private polling: Promise<void> | null = null;
  /** Told of each failure counted (the --workers primary passes them on to its workers). */
  onFailure: (() => void) | null = null;

  constructor(
    private options: SourcesConfig,
    private readonly logger: Logger,
    readonly metrics: Metrics,
  ) {
    metrics.counter('source_fetch_failures_total', 'fetches of URL sources that failed (error status, timeout, too large) or served a document that was refused');
  }

  /** The URLs and options of the configuration about to be loaded (or just reloaded). */
  configure(urls: readonly string[], options: SourcesConfig): void {
    const dirChanged = options.dir !== this.options.dir;
    this.options = options;
    this.urls = urls;
    for (const url of urls) {
      let s = this.states.get(url);
      if (s === undefined || dirChanged) {
        const good = this.readCopy(url);
        s = { good, fresh: null, etag: good?.etag ?? null, lastModified: good?.lastModified ?? null, failure: null, loggedAt: 0, fetched: s?.fetched ?? false, refused: null };
        this.states.set(url, s);
      }
    }
    for (const url of [...this.states.keys()]) if (!urls.includes(url)) this.states.delete(url);
  }

  /** Fetches every URL not fetched yet in this process (at start, or one a reload newly names). */
  async fetchNew(): Promise<void> {
    await Promise.all(this.urls.filter((u) => !this.states.get(u)!.fetched).map((u) => this.fetch(u)));
  }

  /** Fetches every URL; true when one served a new document. */
  async fetchAll(): Promise<boolean> {
    const outcomes = await Promise.all(this.urls.map((u) => this.fetch(u)));
    return outcomes.includes('new');
  }

  /** What a load reads: each URL's fresh copy, else its last good one, else why there is none. */
  documents(): SourceDocuments {
    const out = new Map<string, SourceDocument>();
    for (const url of this.urls) {
      const s = this.states.get(url)!;
      const copy = s.fresh ?? s.good;
      out.set(url, copy !== null ? { bytes: copy.bytes } : { error: `${s.failure ?? 'not fetched'}, and no last good copy in ${this.options.dir}` });
    }
    return out;
  }

  /** The last good copies only: what the running configuration (or the last one that passed) was built from. */
  goodDocuments(): SourceDocuments {
    const out = new Map<string, SourceDocument>();
    for (const url of this.urls) {
      const s = this.states.get(url)!;
      out.set(url, s.good !== null ? { bytes: s.good.bytes } : { error: `${s.failure ?? 'the fetched document was refused'}, and no last good copy in ${this.options.dir}` });
    }
    return out;
  }

  /** documents(), but a URL whose last fetch failed is that failure, whatever copy is on disk. */
  fetchedDocuments(): SourceDocuments {
    const out = new Map(this.documents());
    for (const url of this.urls) {
      const failure = this.states.get(url)!.failure;
      if (failure !== null) out.set(url, { error: failure });
    }
    return out;
  }

  /** Whether every URL has a last good copy to fall back on. */
  hasGoodCopies(): boolean {
    return this.urls.every((u) => this.states.get(u)!.good !== null);
  }

  /** Whether a load from `documents()` would read a document not loaded before. */
  hasFresh(): boolean {
    return this.urls.some((u) => this.states.get(u)!.fresh !== null);
  }

  /**
   * The load of `documents` (from documents()) was applied: its fresh copies become the last good
   * ones, on disk. One fetched by a poll meanwhile stays fresh: it has not been loaded yet.
   */
  accepted(documents: SourceDocuments): void {
    for (const url of this.urls) {
      const s = this.states.get(url)!;
      const d = documents.get(url);
      if (s.fresh === null || d === undefined || !('bytes' in d) || d.bytes !== s.fresh.bytes) continue;
      s.good = s.fresh;
      s.fresh = null;
      this.saveCopy(url, s.good);
    }
  }

  /**
   * The load of `documents()` was refused (invalid, or its golden tests failed): the fresh
   * copies are dropped, so later loads (a file edit, SIGHUP) use the last good ones, and counted.
   * Their validators stay, so the repository answers 304 until it serves another document.
   */
  refused(documents: SourceDocuments): void {
    for (const url of this.urls) {
      const s = this.states.get(url)!;
      const d = documents.get(url);
      if (s.fresh === null || d === undefined || !('bytes' in d) || d.bytes !== s.fresh.bytes) continue;
      s.refused = s.fresh.bytes;
      s.fresh = null;
      this.failed(url, s, 'the document it served was refused (see the reload errors)', true);
    }
  }

  /** Polls every interval (with jitter); `onChange` runs when a URL served a new document. */
  start(onChange: () => void): void {
    this.onChange = onChange;
    this.schedule();
  }

  stop(): void {
    this.onChange = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Waits for a poll in progress (tests, close). */
  async settled(): Promise<void> {
    await this.polling;
  }

  private schedule(): void {
    if (this.onChange === null) return;
    const { intervalMs, jitter } = this.options;
    const wait = intervalMs * (1 - jitter + 2 * jitter * Math.random());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.polling = (async () => {
        try {
          if (this.urls.length > 0 && (await this.fetchAll())) this.onChange?.();
        } finally {
          this.polling = null;
          this.schedule();
        }
      })();
    }, Math.max(1, wait));
    this.timer.unref();
  }

  private async fetch(url: string): Promise<FetchOutcome> {
    const s = this.states.get(url);
    if (s === undefined) return 'failed';
    s.fetched = true;
    const headers: Record<string, string> = {};
    if (s.etag !== null) headers['if-none-match'] = s.etag;
    if (s.lastModified !== null) headers['if-modified-since'] = s.lastModified;
    let copy: Copy;
    try {
      const res = await fetch(url, { headers, redirect: 'follow', signal: AbortSignal.timeout(this.options.timeoutMs) });
      // A document asked for over https must arrive over https: a redirect to http would let
      // anyone on that path write the records and lines.
      if (url.startsWith('https:') && !res.url.startsWith('https:')) {
        await res.body?.cancel();
        throw new Error(`redirected from https to ${res.url}: refused, the document must come over https`);
      }
      if (res.status === 304) {
        await res.body?.cancel();
        this.recovered(url, s);
        return 'unchanged';
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const bytes = await readCapped(res, this.options.maxBytes);
      copy = { bytes, etag: res.headers.get('etag'), lastModified: res.headers.get('last-modified') };
    } catch (err) {
      this.failed(url, s, describe(err, this.options.timeoutMs));
      return 'failed';
    }
    this.recovered(url, s);
    s.etag = copy.etag;
    s.lastModified = copy.lastModified;
    // A 200 with the same body (a server without validators) changes nothing.
    const current = s.fresh ?? s.good;
    if (s.refused !== null && s.refused.equals(copy.bytes)) return 'unchanged';
    if (current !== null && current.bytes.equals(copy.bytes)) {
      if (s.fresh === null && s.good !== null) s.good = { ...s.good, etag: copy.etag, lastModified: copy.lastModified };
      return 'unchanged';
    }
    s.fresh = copy;
    this.logger.info({ source: url, bytes: copy.bytes.length, etag: copy.etag ?? undefined }, 'source: new document fetched');
    return 'new';
  }

  private failed(url: string, s: SourceState, why: string, refused = false): void {
    this.metrics.counter('source_fetch_failures_total').value++;
    this.onFailure?.();
    const now = Date.now();
    // The same failure every poll would flood the log: the first, then one a minute.
    if (s.failure !== why || now - s.loggedAt >= FAILURE_LOG_MS) {
      s.loggedAt = now;
      const what = refused ? 'source: document refused' : 'source: fetch failed';
      this.logger.warn({ source: url, reason: why, lastGood: s.good !== null }, `${what}; ${s.good !== null ? 'keeping the last good copy' : 'no last good copy'}`);
    }
    s.failure = why;
  }

  private recovered(url: string, s: SourceState): void {
    if (s.failure === null) return;
    s.failure = null;
    s.loggedAt = 0;
    this.logger.info({ source: url }, 'source: fetched again');
  }

  private readCopy(url: string): Copy | null {
    const base = join(this.options.dir, fileBase(url));
    try {
      const meta = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as { url?: unknown; etag?: unknown; lastModified?: unknown };
      // Names are a hash of the URL: a copy is only ever read for the URL it was saved for.
      if (meta.url !== url) return null;
      return { bytes: readFileSync(`${base}.body`), etag: typeof meta.etag === 'string' ? meta.etag : null, lastModified: typeof meta.lastModified === 'string' ? meta.lastModified : null };
    } catch {
      return null;
    }
  }

  /**
   * Written to a temporary name and renamed, body first, then its metadata: a crash leaves the
   * old copy or the new one, and a body never pairs with another document's validators.
   */
  private saveCopy(url: string, copy: Copy): void {
    const base = join(this.options.dir, fileBase(url));
    try {
      mkdirSync(this.options.dir, { recursive: true });
      const tmp = `${base}.${process.pid}.tmp`;
      // The metadata goes first without validators, so a crash between the two renames leaves a
      // copy that is fetched again in full rather than one answered 304 for another body.
      writeFileSync(tmp, JSON.stringify({ url, etag: null, lastModified: null }));
      renameSync(tmp, `${base}.json`);
      writeFileSync(tmp, copy.bytes);
      renameSync(tmp, `${base}.body`);
      writeFileSync(tmp, JSON.stringify({ url, etag: copy.etag, lastModified: copy.lastModified, savedAt: new Date().toISOString() }));
      renameSync(tmp, `${base}.json`);
    } catch (err) {
      // Serving goes on; only a restart during an outage of the repository would miss this copy.
      this.logger.error({ source: url, dir: this.options.dir, err: (err as Error).message }, 'source: cannot save the last good copy');
    }
  }
}

async function readCapped(res: Response, max: number): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel();
    throw new Error(`larger than sources.maxSize (${max} bytes)`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body === null) return Buffer.alloc(0);
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      throw new Error(`larger than sources.maxSize (${max} bytes)`);
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks, total);
}

function describe(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  // undici's "fetch failed" says nothing; its cause says what did (ECONNREFUSED, a closed socket).
  if (e.cause?.message) return e.cause.message;
  if (e.cause?.code) return e.cause.code;
  return e.message ?? String(err);
}

export interface StartLoad {
  config: RuntimeConfig;
  warnings: ConfigIssue[];
  sources: SourceSet;
}

/**
 * The configuration to start with: URL sources fetched, loaded, and its own golden tests run (a
 * configuration whose tests fail is not served). When the documents just fetched are refused
 * (invalid, or their tests fail) or could not be fetched, the last good copies on disk (which
 * passed) are used instead. Throws ConfigError (invalid) or Error (tests failed, no copy).
 */
export async function loadForStart(file: string | null, overrides: ConfigOverrides, logger: Logger, metrics: Metrics): Promise<StartLoad> {
  const plan = sourcePlan(file, overrides);
  const sources = new SourceSet(plan.sources, logger, metrics);
  sources.configure(plan.urls, plan.sources);
  await sources.fetchNew();
  const attempt = async (documents: SourceDocuments): Promise<{ config: RuntimeConfig; warnings: ConfigIssue[] }> => {
    const loaded = loadConfig(file, overrides, documents);
    if (!(await goldenGate(loaded.config, logger, 'start'))) throw new Error(`the golden tests of ${loaded.config.tests!.file} failed (logged above): not serving this configuration`);
    return loaded;
  };
  const documents = sources.documents();
  try {
    const loaded = await attempt(documents);
    sources.accepted(documents);
    return { ...loaded, sources };
  } catch (err) {
    if (!sources.hasFresh() || !sources.hasGoodCopies()) throw err;
    logger.warn({ errors: failureLines(err) }, 'source: the documents fetched at start were refused; starting from the last good copies');
    sources.refused(documents);
    return { ...(await attempt(sources.goodDocuments())), sources };
  }
}

/**
 * A reload (SIGHUP, a file change, a poll that fetched a new document): URL sources brought up to
 * date, loaded and golden-gated; null when refused (logged). When it fails with newly fetched
 * documents, it is tried again with the last good copies: if that passes, the fetched documents
 * were at fault and are refused (counted), and the rest of the change (a file edited meanwhile)
 * still applies, unless it is the running configuration again (`same`), which is a refusal too.
 * The caller calls `sources.accepted()` once the returned configuration is applied.
 */
export async function reloadWithSources(file: string | null, overrides: ConfigOverrides, logger: Logger, sources: SourceSet, same: (c: RuntimeConfig) => boolean): Promise<{ config: RuntimeConfig; documents: SourceDocuments } | null> {
  const plan = sourcePlan(file, overrides);
  sources.configure(plan.urls, plan.sources);
  await sources.fetchNew();
  const documents = sources.documents();
  const next = reloadConfig(file, overrides, logger, documents);
  if (next !== null && (await goldenGate(next, logger))) return { config: next, documents };
  if (!sources.hasFresh() || !sources.hasGoodCopies()) return null;
  const good = sources.goodDocuments();
  const fallback = reloadConfig(file, overrides, silent(logger), good);
  if (fallback === null || !(await goldenGate(fallback, silent(logger)))) return null;
  sources.refused(documents);
  return same(fallback) ? null : { config: fallback, documents: good };
}

/**
 * `linedns check` and `explain`: the URL sources fetched once (nothing saved). A URL that cannot
 * be fetched is an error there even when a last good copy exists: check says what a start would
 * meet, and a 304 for that copy is the repository's word that it is current.
 */
export async function fetchForCheck(file: string | null, overrides: ConfigOverrides, logger: Logger): Promise<SourceDocuments> {
  const plan = sourcePlan(file, overrides);
  const sources = new SourceSet(plan.sources, logger, new Metrics());
  sources.configure(plan.urls, plan.sources);
  await sources.fetchNew();
  return sources.fetchedDocuments();
}

/** The fallback's own errors would repeat the ones just logged. */
function silent(logger: Logger): Logger {
  return logger.child({}, { level: 'silent' });
}
