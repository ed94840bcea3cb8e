// The admin endpoint (`admin` in linedns.json): an HTTP server for /metrics (Prometheus text),
// /healthz, /readyz, /explain and /cache, answering only the clients of its allow list.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter as PromCounter, Gauge, Registry } from 'prom-client';
import type { AdminConfig, RuntimeConfig } from '../config/types.js';
import type { CounterOrGaugeMetric, Stage, StageHealth } from '../core/stage.js';
import { AddressMatcher } from '../lib/net/matcher.js';
import type { Metrics } from '../lib/metrics.js';
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

export class AdminServer {
  private allow: AddressMatcher;
  private readonly registry = new Registry();
  /** Names of lib/metrics counters already mirrored in the registry. */
  private readonly mirrored = new Set<string>();
  /** The stages' own metrics (Stage.metrics), read once per scrape; their prom-client metrics read from here. */
  private stageMetrics = new Map<string, CounterOrGaugeMetric>();

  private constructor(
    private readonly http: Server,
    readonly config: AdminConfig,
    private readonly source: AdminSource,
    private readonly logger: Logger,
  ) {
    this.allow = new AddressMatcher(config.allow);
    const src = source;
    // Collected at scrape time from what the server holds: nothing is added to the query path.
    new Gauge({
      name: `${PREFIX}config_info`,
      help: 'The running configuration: hash is the first 12 hex digits of the sha256 of its JSON',
      labelNames: ['hash'],
      registers: [this.registry],
      collect() {
        this.reset();
        this.set({ hash: src.configHash }, 1);
      },
    });
    new Gauge({
      name: `${PREFIX}config_loaded_timestamp_seconds`,
      help: 'When the running configuration was loaded (start or last successful reload), seconds since the epoch',
      registers: [this.registry],
      collect() {
        this.set(src.configLoadedAt / 1000);
      },
    });
    new Gauge({
      name: `${PREFIX}ready`,
      help: '1 when /readyz answers 200',
      registers: [this.registry],
      collect() {
        this.set(src.ready().ok ? 1 : 0);
      },
    });
  }

  static async start(config: AdminConfig, source: AdminSource, logger: Logger): Promise<AdminServer> {
    const http = createServer();
    const admin = new AdminServer(http, config, source, logger);
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
        const r = this.source.ready();
        return send(res, r.ok ? 200 : 503, 'text/plain', r.ok ? 'ok\n' : `not ready: ${r.reason ?? 'unknown'}\n`);
      }
      case 'GET /metrics':
        return send(res, 200, this.registry.contentType, await this.scrape());
      case 'GET /explain':
        return this.explain(url, res);
      case 'GET /cache':
        return this.cacheStats(res);
      case 'POST /cache/flush':
        return this.flush(url, res);
      default: {
        const known = ['/healthz', '/readyz', '/metrics', '/explain', '/cache', '/cache/flush'];
        if (known.includes(url.pathname)) return send(res, 405, 'text/plain', `method ${method} not allowed on ${url.pathname}\n`);
        return send(res, 404, 'text/plain', `not found; try ${known.join(', ')}\n`);
      }
    }
  }

  /** Prometheus text: lib/metrics' counters (mirrored on first sight), the config's, the process's. */
  async scrape(): Promise<string> {
    for (const c of this.source.metrics.all()) {
      // A name a stage's metrics() took first stays the stage's: prom-client refuses a second registration.
      if (this.mirrored.has(c.name) || this.mirrored.has(`stage:${c.name}`)) continue;
      this.mirrored.add(c.name);
      const counter = c;
      const name = `${PREFIX}${c.name}`;
      const help = c.help || c.name;
      // lib/metrics names counters *_total and gauges (cache_entries) otherwise.
      if (c.name.endsWith('_total')) {
        new PromCounter({
          name,
          help,
          registers: [this.registry],
          collect() {
            this.reset();
            this.inc(counter.value);
          },
        });
      } else {
        new Gauge({
          name,
          help,
          registers: [this.registry],
          collect() {
            this.set(counter.value);
          },
        });
      }
    }
    this.stageMetrics = new Map();
    for (const stage of this.source.stages()) for (const sm of stage.metrics?.() ?? []) if (sm.type !== 'histogram') this.mirrorStageMetric(sm);
    return `${await this.registry.metrics()}\n${await processMetrics().metrics()}`;
  }

  private mirrorStageMetric(sm: CounterOrGaugeMetric): void {
    const known = this.stageMetrics.has(sm.name) || this.mirrored.has(`stage:${sm.name}`);
    // Two stages giving the same name (two forward entries): their samples are shown together.
    const prev = this.stageMetrics.get(sm.name);
    this.stageMetrics.set(sm.name, prev === undefined ? sm : { ...sm, samples: [...prev.samples, ...sm.samples] });
    if (known || this.mirrored.has(sm.name)) return;
    this.mirrored.add(`stage:${sm.name}`);
    const labelNames = Object.keys(sm.samples[0]?.labels ?? {});
    const current = (): CounterOrGaugeMetric | undefined => this.stageMetrics.get(sm.name);
    const config = { name: `${PREFIX}${sm.name}`, help: sm.help, labelNames, registers: [this.registry] };
    if (sm.type === 'counter') {
      new PromCounter({
        ...config,
        collect() {
          this.reset();
          for (const x of current()?.samples ?? []) this.inc(x.labels, x.value);
        },
      });
    } else {
      new Gauge({
        ...config,
        collect() {
          this.reset();
          for (const x of current()?.samples ?? []) this.set(x.labels, x.value);
        },
      });
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
      const e = await explain(this.source.config, { name, type: p.get('type') ?? 'A', client, ecs: p.get('ecs') ?? undefined });
      return sendJson(res, 200, e);
    } catch (err) {
      if (err instanceof ExplainError) return sendJson(res, 400, { error: err.message });
      throw err;
    }
  }

  private caches(): Stage[] {
    return this.source.stages().filter((s) => s.admin !== undefined);
  }

  private cacheStats(res: ServerResponse): void {
    const caches = this.caches();
    if (caches.length === 0) return sendJson(res, 404, { error: 'no stage of the pipeline keeps answers' });
    const out: Record<string, Record<string, number>> = {};
    for (const s of caches) out[s.name] = s.admin!.stats();
    sendJson(res, 200, out);
  }

  private flush(url: URL, res: ServerResponse): void {
    const caches = this.caches();
    if (caches.length === 0) return sendJson(res, 404, { error: 'no stage of the pipeline keeps answers' });
    const name = url.searchParams.get('name') ?? undefined;
    const flushed: Record<string, number> = {};
    for (const s of caches) flushed[s.name] = s.admin!.flush(name);
    this.logger.info({ name: name ?? null, flushed }, name === undefined ? 'cache flushed' : 'cache flushed for one name');
    sendJson(res, 200, { name: name ?? null, flushed });
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(body, null, 2)}\n`);
}
