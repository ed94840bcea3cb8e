// The admin endpoint (`admin` in linedns.json): an HTTP server for /metrics (Prometheus text),
// /healthz, /readyz, /explain and /cache, answering only the clients of its allow list.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AggregatorRegistry, collectDefaultMetrics, Registry, type Aggregator, type Metric } from 'prom-client';
import type { AdminConfig, RuntimeConfig } from '../config/types.js';
import { formatHostPort } from '../lib/net/address.js';
import type { Stage, StageHealth, StageMetric } from '../core/stage.js';
import { lineSetById } from '../core/views.js';
import { AddressMatcher } from '../lib/net/matcher.js';
import { DURATION_BUCKETS, TRANSPORT_NAMES, type Metrics, type QueryStats } from '../lib/metrics.js';
import { explain, ExplainError } from './explain.js';

/** What the admin endpoint reads from the running server; every read happens per request. */
export interface AdminSource {
  readonly config: RuntimeConfig;
  readonly metrics: Metrics;
  /** The stages of the running pipeline (not of those draining after a rebuild). */
  stages(): readonly Stage[];
  /** Config loaded and sockets bound, then every stage's health; the first reason it is not ready. */
  ready(): StageHealth;
  /** sha256 of the running configuration (first 12 hex digits) and when it was loaded (ms since the epoch). */
  readonly configHash: string;
  readonly configLoadedAt: number;
}

/** /cache: each answer-keeping stage's numbers, by stage name. */
export type CacheStats = Record<string, Record<string, number>>;

/**
 * What the HTTP endpoint serves: one process's server (localBackend), or the --workers primary,
 * which asks its workers over IPC (app/workers.ts) and sums what they say.
 */
export interface AdminBackend {
  /** The configuration /explain runs (the primary's is the workers'). */
  readonly config: RuntimeConfig;
  /** Prometheus text. */
  metrics(): Promise<string>;
  ready(): Promise<StageHealth>;
  /** null when no stage of the pipeline keeps answers. */
  caches(): Promise<CacheStats | null>;
  /** Answers dropped per stage; null when no stage keeps answers. */
  flush(name: string | undefined): Promise<Record<string, number> | null>;
}

/** Prefix of every linedns metric; the process metrics keep their usual names (process_*, nodejs_*). */
const PREFIX = 'linedns_';

/**
 * Process metrics are one set per process whatever the number of servers (tests start many):
 * registered once, in a registry of their own, and appended to each scrape.
 */
let processRegistry: Registry | null = null;
function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** IPv4 clients of a dual-stack socket arrive as ::ffff:a.b.c.d; the allow list names them as a.b.c.d. */
function clientAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

type Labels = Readonly<Record<string, string>>;
/** One line of Prometheus text as prom-client describes it; `metricName` for a histogram's _bucket, _sum, _count. */
interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}
type MetricKind = 'counter' | 'gauge' | 'histogram';

/**
 * A metric whose values are built when scraped, from counts the server keeps itself: what
 * prom-client's registry and its cluster aggregator read (get(), aggregator), without a
 * prom-client object updated per query.
 */
function register(registry: Registry, name: string, help: string, type: MetricKind, aggregator: Aggregator, values: () => Sample[]): void {
  const m = { name, help, type, aggregator, get: async () => ({ name, help, type, aggregator, values: values() }) };
  // prom-client's typings know only its own classes; its registry takes any object of this shape.
  registry.registerMetric(m as unknown as Metric);
}

/** A histogram's lines from counts per bucket (not cumulative, +Inf last) and the sum of observations. */
function histogramSamples(name: string, buckets: readonly number[], labels: Labels, counts: readonly number[], sum: number): Sample[] {
  const out: Sample[] = [];
  let total = 0;
  for (let i = 0; i <= buckets.length; i++) {
    total += counts[i] ?? 0;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: i < buckets.length ? String(buckets[i]) : '+Inf' }, value: total });
  }
  out.push({ metricName: `${name}_sum`, labels, value: sum }, { metricName: `${name}_count`, labels, value: total });
  return out;
}

/** Counters the --workers primary counts itself (it reloads and fetches URL sources): the workers' own are left out of the sum. */
const PRIMARY_COUNTERS = new Set(['config_reloads_total', 'config_reload_failures_total', 'source_fetch_failures_total']);

/**
 * One server's metrics as a prom-client registry: lib/metrics' counters, the replies counted by
 * the transports (QueryStats), the stages' metrics() and the config's, all read at scrape time.
 * A single process renders it; a --workers worker hands its JSON to the primary, which sums.
 */
export class ServerRegistry {
  readonly registry = new Registry();
  /** Names already registered (lib/metrics counters and stage metrics share the namespace). */
  private readonly known = new Set<string>();
  /** The stages' own metrics, read once per scrape, merged by name (two forward entries). */
  private stageMetrics = new Map<string, StageMetric>();

  constructor(private readonly source: AdminSource) {
    const src = source;
    const r = this.registry;
    // The config's and readiness are the primary's to say under --workers: omitted from the sum.
    register(r, `${PREFIX}config_info`, 'The running configuration: hash is the first 12 hex digits of the sha256 of its JSON', 'gauge', 'omit', () => [{ labels: { hash: src.configHash }, value: 1 }]);
    register(r, `${PREFIX}config_loaded_timestamp_seconds`, 'When the running configuration was loaded (start or last successful reload), seconds since the epoch', 'gauge', 'omit', () => [
      { labels: {}, value: src.configLoadedAt / 1000 },
    ]);
    register(r, `${PREFIX}ready`, '1 when /readyz answers 200', 'gauge', 'omit', () => [{ labels: {}, value: src.ready().ok ? 1 : 0 }]);
    const stats = (): QueryStats | null => src.metrics.queries;
    register(r, `${PREFIX}replies_total`, 'Replies sent, by transport, query type (common ones by name, the rest "other"), RCODE and the stage that answered (memo repeats count as the stage that made the answer)', 'counter', 'sum', () => stats()?.replies() ?? []);
    register(r, `${PREFIX}reply_duration_seconds`, 'From a query\'s arrival to its reply\'s send, by transport (the buckets of CoreDNS\'s dns_request_duration_seconds)', 'histogram', 'sum', () => {
      const q = stats();
      if (q === null) return [];
      return TRANSPORT_NAMES.flatMap((t, i) => {
        const d = q.durations(i);
        return histogramSamples(`${PREFIX}reply_duration_seconds`, DURATION_BUCKETS, { transport: t }, d.counts, d.sum);
      });
    });
    register(r, `${PREFIX}line_replies_total`, 'Replies sent to clients of each smart line (a client in several lines counts in each)', 'counter', 'sum', () => lineSamples(stats()));
  }

  /** Registers what appeared since the last scrape (counters made on first use, stage metrics) and reads the stages. */
  refresh(): void {
    for (const c of this.source.metrics.all()) {
      if (this.known.has(c.name)) continue;
      this.known.add(c.name);
      const counter = c;
      // lib/metrics names counters *_total and gauges (cache_entries) otherwise.
      const type = c.name.endsWith('_total') ? 'counter' : 'gauge';
      register(this.registry, `${PREFIX}${c.name}`, c.help || c.name, type, PRIMARY_COUNTERS.has(c.name) ? 'omit' : 'sum', () => [{ labels: {}, value: counter.value }]);
    }
    const current = new Map<string, StageMetric>();
    for (const stage of this.source.stages()) {
      for (const sm of stage.metrics?.() ?? []) {
        const prev = current.get(sm.name);
        // Two stages giving the same name (two forward entries): their samples are shown together.
        if (prev === undefined) current.set(sm.name, sm);
        else if (prev.type === sm.type) current.set(sm.name, { ...prev, samples: [...prev.samples, ...sm.samples] } as StageMetric);
      }
    }
    this.stageMetrics = current;
    for (const sm of current.values()) {
      // A name lib/metrics took first stays lib/metrics' (a registry refuses a second registration).
      if (this.known.has(sm.name)) continue;
      this.known.add(sm.name);
      const name = `${PREFIX}${sm.name}`;
      const key = sm.name;
      register(this.registry, name, sm.help, sm.type, sm.aggregate ?? 'sum', () => {
        const m = this.stageMetrics.get(key);
        if (m === undefined) return [];
        if (m.type !== 'histogram') return m.samples.map((x) => ({ labels: x.labels, value: x.value }));
        return m.samples.flatMap((x) => histogramSamples(name, m.buckets, x.labels, x.counts, x.sum));
      });
    }
  }

  /** Prometheus text: this server's metrics, then the process's. */
  async text(): Promise<string> {
    this.refresh();
    return `${await this.registry.metrics()}\n${await processMetrics().metrics()}`;
  }

  /** What a --workers worker sends the primary: prom-client's JSON of both registries. */
  async json(): Promise<unknown[]> {
    this.refresh();
    return [await this.registry.getMetricsAsJSON(), await processMetrics().getMetricsAsJSON()];
  }
}

/** line_replies_total: the counts per LineSet id, spread over each set's lines. */
function lineSamples(stats: QueryStats | null): Sample[] {
  if (stats === null) return [];
  const perLine = new Map<string, number>();
  const sets = stats.lineSets;
  for (let id = 1; id < sets.length; id++) {
    if (sets[id] === 0) continue;
    for (const line of lineSetById(id)?.lines ?? []) perLine.set(line, (perLine.get(line) ?? 0) + sets[id]!);
  }
  return [...perLine].map(([line, value]) => ({ labels: { line }, value }));
}

/** The admin endpoint of one process: everything read from its own server. */
export function localBackend(source: AdminSource): AdminBackend {
  const metrics = new ServerRegistry(source);
  const caches = (): Stage[] => source.stages().filter((s) => s.admin !== undefined);
  return {
    get config() {
      return source.config;
    },
    metrics: () => metrics.text(),
    ready: async () => source.ready(),
    caches: async () => cacheStats(caches()),
    flush: async (name) => flushCaches(caches(), name),
  };
}

/** /cache of one server's stages; null when none keeps answers. */
export function cacheStats(stages: readonly Stage[]): CacheStats | null {
  if (stages.length === 0) return null;
  const out: CacheStats = {};
  for (const s of stages) out[s.name] = s.admin!.stats();
  return out;
}

export function flushCaches(stages: readonly Stage[], name: string | undefined): Record<string, number> | null {
  if (stages.length === 0) return null;
  const flushed: Record<string, number> = {};
  for (const s of stages) flushed[s.name] = s.admin!.flush(name);
  return flushed;
}

/** What the --workers primary itself knows: its configuration, its reloads, how many workers are ready. */
export interface PrimarySource {
  readonly configHash: string;
  readonly configLoadedAt: number;
  readonly metrics: Metrics;
  readonly workers: number;
}

/**
 * The primary's /metrics: the workers' registries summed by prom-client's aggregator (each
 * metric by its own rule: counters and histograms summed, an up gauge's least), then the
 * primary's own config, reload and readiness metrics, which the workers leave out.
 */
export class PrimaryMetrics {
  private readonly registry = new Registry();
  private lastReady: StageHealth = { ok: false };
  private lastReadyWorkers = 0;

  constructor(source: PrimarySource) {
    const r = this.registry;
    register(r, `${PREFIX}config_info`, 'The running configuration: hash is the first 12 hex digits of the sha256 of its JSON', 'gauge', 'omit', () => [{ labels: { hash: source.configHash }, value: 1 }]);
    register(r, `${PREFIX}config_loaded_timestamp_seconds`, 'When the running configuration was loaded (start or last successful reload), seconds since the epoch', 'gauge', 'omit', () => [
      { labels: {}, value: source.configLoadedAt / 1000 },
    ]);
    register(r, `${PREFIX}ready`, '1 when /readyz answers 200', 'gauge', 'omit', () => [{ labels: {}, value: this.lastReady.ok ? 1 : 0 }]);
    register(r, `${PREFIX}workers`, 'Workers configured (--workers)', 'gauge', 'omit', () => [{ labels: {}, value: source.workers }]);
    register(r, `${PREFIX}workers_ready`, 'Workers that answered the last /readyz or /metrics as ready', 'gauge', 'omit', () => [{ labels: {}, value: this.lastReadyWorkers }]);
    for (const name of PRIMARY_COUNTERS) {
      const c = source.metrics.counter(name);
      register(r, `${PREFIX}${name}`, c.help || name, 'counter', 'omit', () => [{ labels: {}, value: c.value }]);
    }
  }

  /** `workers`: each ready worker's ServerRegistry.json(); `ready`: the cluster's readiness with how many workers are ready. */
  async text(workers: readonly unknown[][], ready: StageHealth, readyWorkers: number): Promise<string> {
    this.lastReady = ready;
    this.lastReadyWorkers = readyWorkers;
    const summed = workers.length === 0 ? '' : await AggregatorRegistry.aggregate(workers.flat() as object[]).metrics();
    return `${summed}\n${await this.registry.metrics()}\n`;
  }
}

export class AdminServer {
  private allow: AddressMatcher;

  private constructor(
    private readonly http: Server,
    readonly config: AdminConfig,
    private readonly backend: AdminBackend,
    private readonly logger: Logger,
  ) {
    this.allow = new AddressMatcher(config.allow);
  }

  static async start(config: AdminConfig, backend: AdminBackend, logger: Logger): Promise<AdminServer> {
    const http = createServer();
    const admin = new AdminServer(http, config, backend, logger);
    http.on('request', (req: IncomingMessage, res: ServerResponse) => {
      admin.handle(req, res).catch((err: unknown) => {
        logger.error({ err }, 'admin request failed');
        if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
        else res.destroy();
      });
    });
    // Scrapers keep connections alive; close() must not wait for them.
    http.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(config.port, config.host, () => {
        http.off('error', reject);
        resolve();
      });
    });
    http.on('error', (err) => logger.error({ err }, 'admin endpoint error'));
    return admin;
  }

  /** host:port actually bound (the real port when asked for 0). */
  get address(): { host: string; port: number } {
    const a = this.http.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** A reload that keeps the address but changes who may ask applies at once. */
  setAllow(allow: readonly string[]): void {
    this.allow = new AddressMatcher(allow);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const client = clientAddress(req);
    if (!this.allow.matches(client)) {
      send(res, 403, 'text/plain', `forbidden: ${client} is not in the admin allow list\n`);
      return;
    }
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    const route = `${method === 'HEAD' ? 'GET' : method} ${url.pathname}`;
    switch (route) {
      case 'GET /healthz':
        return send(res, 200, 'text/plain', 'ok\n');
      case 'GET /readyz': {
        const r = await this.backend.ready();
        return send(res, r.ok ? 200 : 503, 'text/plain', r.ok ? 'ok\n' : `not ready: ${r.reason ?? 'unknown'}\n`);
      }
      case 'GET /metrics':
        return send(res, 200, Registry.PROMETHEUS_CONTENT_TYPE, await this.backend.metrics());
      case 'GET /explain':
        return this.explain(url, res);
      case 'GET /cache': {
        const stats = await this.backend.caches();
        if (stats === null) return sendJson(res, 404, { error: 'no stage of the pipeline keeps answers' });
        return sendJson(res, 200, stats);
      }
      case 'POST /cache/flush':
        return this.flush(url, res);
      default: {
        const known = ['/healthz', '/readyz', '/metrics', '/explain', '/cache', '/cache/flush'];
        if (known.includes(url.pathname)) return send(res, 405, 'text/plain', `method ${method} not allowed on ${url.pathname}\n`);
        return send(res, 404, 'text/plain', `not found; try ${known.join(', ')}\n`);
      }
    }
  }

  private async explain(url: URL, res: ServerResponse): Promise<void> {
    const p = url.searchParams;
    const name = p.get('name');
    const client = p.get('client');
    if (name === null || name === '' || client === null || client === '') {
      return sendJson(res, 400, { error: 'expected /explain?name=NAME&client=IP[&type=TYPE][&ecs=CIDR]' });
    }
    try {
      // Offline, with the running config: nothing is sent upstream and the running cache is untouched.
      const e = await explain(this.backend.config, { name, type: p.get('type') ?? 'A', client, ecs: p.get('ecs') ?? undefined });
      return sendJson(res, 200, e);
    } catch (err) {
      if (err instanceof ExplainError) return sendJson(res, 400, { error: err.message });
      throw err;
    }
  }

  private async flush(url: URL, res: ServerResponse): Promise<void> {
    const name = url.searchParams.get('name') ?? undefined;
    const flushed = await this.backend.flush(name);
    if (flushed === null) return sendJson(res, 404, { error: 'no stage of the pipeline keeps answers' });
    this.logger.info({ name: name ?? null, flushed }, name === undefined ? 'cache flushed' : 'cache flushed for one name');
    sendJson(res, 200, { name: name ?? null, flushed });
  }
}

/** Starts the endpoint and logs where; a failure names the address it could not bind. */
export async function startAdmin(a: AdminConfig, backend: AdminBackend, logger: Logger): Promise<AdminServer> {
  try {
    const admin = await AdminServer.start(a, backend, logger);
    const b = admin.address;
    logger.info({ admin: `http://${formatHostPort(b.host, b.port)}` }, 'admin endpoint listening');
    return admin;
  } catch (err) {
    throw new Error(`cannot listen on admin address ${formatHostPort(a.host, a.port)}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/**
 * A reload's `admin`: the same address keeps the endpoint and takes the new allow list; another
 * re-binds; none closes it. Returns the endpoint now running (null: none, or it could not bind).
 */
export async function reconcileAdmin(cur: AdminServer | null, next: AdminConfig | null, backend: () => AdminBackend, logger: Logger): Promise<AdminServer | null> {
  if (cur !== null && next !== null && cur.config.host === next.host && cur.config.port === next.port) {
    cur.setAllow(next.allow);
    return cur;
  }
  await cur?.close();
  if (next === null) return null;
  try {
    return await startAdmin(next, backend(), logger);
  } catch (err) {
    // DNS keeps serving on the new config; only the admin endpoint is off until a reload fixes it.
    logger.error({ err: String(err) }, 'admin endpoint not restarted');
    return null;
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
}
