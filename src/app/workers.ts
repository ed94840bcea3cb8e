// --workers N: a cluster primary that owns the configuration (loads, validates and reloads it)
// and hands its last good one to every worker it forks, restarting dead workers with backoff.

import cluster, { type Worker } from 'node:cluster';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import type { Logger } from 'pino';
import type { AdminBackend, AdminServer, CacheStats, PrimaryMetrics } from './admin.js';
import type { LineDnsServer } from './server.js';
import { configHash } from './server.js';
import { Metrics } from '../lib/metrics.js';
import type { StageHealth } from '../core/stage.js';
import type { ConfigOverrides } from '../config/load.js';
import { ConfigWatcher } from './watch.js';
import { reloadWithSources, SourceSet } from './sources.js';
import type { RuntimeConfig } from '../config/types.js';

/** Primary to worker: the configuration to serve (at start, and again after each reload). */
export interface ConfigMessage {
  type: 'linedns-config';
  config: RuntimeConfig;
}

/** Worker to primary. */
export type WorkerMessage = { type: 'linedns-want-config' } | { type: 'linedns-ready'; addresses: string[] };

/** What the primary's admin endpoint asks each worker (the workers serve no endpoint of their own). */
export type AdminOp = 'metrics' | 'ready' | 'cache' | 'flush';
export interface AdminRequest {
  type: 'linedns-admin';
  id: number;
  op: AdminOp;
  /** flush: the name to drop, or everything. */
  name?: string;
}
export interface AdminReply {
  type: 'linedns-admin-reply';
  id: number;
  /** metrics: prom-client JSON of the worker's registries; ready: StageHealth; cache: CacheStats | null; flush: counts | null. */
  result: unknown;
}

/** A worker that has not answered an admin request in this long counts as not answering. */
const ADMIN_ASK_MS = 2_000;

/**
 * Node >= 22.12 (and 23.1) binds UDP and TCP with reusePort: each worker then has sockets of its
 * own on the same port and the kernel spreads queries across them, instead of the primary's one
 * shared UDP socket (and round-robin TCP accepts) of older versions.
 */
export function supportsReusePort(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/** `--workers auto`: one worker per CPU this process may use. */
export function autoWorkers(): number {
  return Math.max(1, Math.min(64, os.availableParallelism()));
}

export const RESTART_MIN_MS = 100;
export const RESTART_MAX_MS = 30_000;
/** A worker that stayed up this long has shown the setup works: the next restart is fast again. */
export const STABLE_MS = 10_000;
/** A worker that hears nothing from the primary this long gives up rather than hang unseen. */
const CONFIG_WAIT_MS = 10_000;

/**
 * Delay before replacing a worker that died after `upMs`: doubles while workers keep dying
 * young, so a worker that cannot start costs a handful of forks a minute, not several a second.
 */
export function nextRestartDelay(previousMs: number, upMs: number): number {
  if (upMs >= STABLE_MS || previousMs <= 0) return RESTART_MIN_MS;
  return Math.min(RESTART_MAX_MS, previousMs * 2);
}

export interface PrimaryOptions {
  config: RuntimeConfig;
  overrides: ConfigOverrides;
  logger: Logger;
  onReady: (addresses: string[]) => void;
  /** The URL sources the config was loaded from (loadForStart): the primary polls them. */
  sources?: SourceSet;
}

function isAdminReply(msg: unknown): msg is AdminReply {
  return (msg as { type?: unknown } | null)?.type === 'linedns-admin-reply';
}

/** A port free for both UDP and TCP on `host` right now (kept by neither once returned). */
async function freePortPair(host: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: host, port: 0, exclusive: true }, () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (tcpFree) return port;
    if (attempt >= 10) throw new Error(`no port free for both UDP and TCP on ${host}`);
  }
}

/**
 * With reusePort each worker binds the port itself: a listen port of 0 would give each its own,
 * so the primary picks one free port per address first and hands the same to every worker.
 */
async function pickPorts(config: RuntimeConfig): Promise<RuntimeConfig['listen']> {
  const out: RuntimeConfig['listen'][number][] = [];
  for (const l of config.listen) out.push(l.port === 0 ? { ...l, port: await freePortPair(l.host) } : l);
  return out;
}

/** Asks workers over IPC, each answer bounded in time: a worker that is starting or stuck answers null. */
class WorkerAsk {
  private next = 0;
  private readonly pending = new Map<number, (result: unknown) => void>();

  constructor() {
    cluster.on('message', (_worker, msg: unknown) => {
      if (!isAdminReply(msg)) return;
      this.pending.get(msg.id)?.(msg.result);
    });
  }

  ask(worker: Worker, op: AdminOp, name?: string): Promise<unknown> {
    const id = this.next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(null), ADMIN_ASK_MS);
      const finish = (result: unknown): void => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(result);
      };
      this.pending.set(id, finish);
      try {
        worker.send({ type: 'linedns-admin', id, op, ...(name === undefined ? {} : { name }) } satisfies AdminRequest);
      } catch {
        finish(null);
      }
    });
  }

  /** Every connected worker's answer (null for those that did not answer). */
  all(op: AdminOp, name?: string): Promise<unknown[]> {
    const ws = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
    return Promise.all(ws.map((w) => this.ask(w, op, name)));
  }
}

function sumInto(into: Record<string, number>, add: Record<string, number>): void {
  for (const [k, v] of Object.entries(add)) into[k] = (into[k] ?? 0) + v;
}

function isWorkerMessage(msg: unknown): msg is WorkerMessage {
  const type = (msg as { type?: unknown } | null)?.type;
  return type === 'linedns-want-config' || type === 'linedns-ready';
}

/** Runs in the primary: forks `config.workers` workers; exits once they all have after SIGTERM. */
export function runPrimary({ config: initial, overrides, logger, onReady, sources: given }: PrimaryOptions): void {
  // The last good configuration: what every worker, first or replacement, is given. Workers never
  // read the files, so a file broken on disk cannot reach a worker that restarts.
  let config = initial;
  const workers = initial.workers;
  let stopping = false;
  let announced = false;
  let delay = 0;
  const forkedAt = new Map<number, number>();
  const ready = new Set<number>();
  const timers = new Set<NodeJS.Timeout>();
  // Counted here: the primary is the one that loads and refuses configurations.
  // The primary's own counters (reloads, URL source failures), shown beside the workers' sum.
  // The workers never load nor fetch, so these are counted here alone.
  const sources = given ?? new SourceSet(initial.sources, logger, new Metrics());
  const metrics = sources.metrics;
  const reloads = metrics.counter('config_reloads_total', 'successful reloads');
  const reloadFailures = metrics.counter('config_reload_failures_total', 'reloads refused: invalid config');
  let hash = configHash(config);
  let loadedAt = Date.now();
  let admin: AdminServer | null = null;
  const ask = new WorkerAsk();
  const reusePort = supportsReusePort();
  let listen = config.listen;
  /** What a worker is sent: with reusePort, the listen ports the primary picked for port 0. */
  const forWorkers = (c: RuntimeConfig): RuntimeConfig => (reusePort && JSON.stringify(c.listen) === JSON.stringify(initial.listen) ? { ...c, listen } : c);

  /** /readyz of the whole: ready when every configured worker says it is. */
  const readiness = async (): Promise<{ health: StageHealth; ready: number }> => {
    const answers = (await ask.all('ready')) as (StageHealth | null)[];
    const ok = answers.filter((a) => a?.ok === true).length;
    if (ok >= workers) return { health: { ok: true }, ready: ok };
    const why = answers.find((a) => a !== null && !a.ok)?.reason;
    return { health: { ok: false, reason: `${ok} of ${workers} workers ready${why === undefined ? '' : ` (${why})`}` }, ready: ok };
  };
  let primaryMetrics: PrimaryMetrics | null = null;
  const backend = (): AdminBackend => ({
    get config() {
      return config;
    },
    metrics: async () => {
      const [answers, r] = await Promise.all([ask.all('metrics'), readiness()]);
      return primaryMetrics!.text(answers.filter((a): a is unknown[] => Array.isArray(a)), r.health, r.ready);
    },
    ready: async () => (await readiness()).health,
    caches: async () => {
      const answers = (await ask.all('cache')) as (CacheStats | null)[];
      if (answers.every((a) => a === null)) return null;
      const out: CacheStats = {};
      for (const a of answers) for (const [stage, stats] of Object.entries(a ?? {})) sumInto((out[stage] ??= {}), stats);
      return out;
    },
    flush: async (name) => {
      const answers = (await ask.all('flush', name)) as (Record<string, number> | null)[];
      if (answers.every((a) => a === null)) return null;
      const out: Record<string, number> = {};
      for (const a of answers) sumInto(out, a ?? {});
      return out;
    },
  });
  /** The admin endpoint lives in the primary; prom-client is loaded only when it is configured. */
  const applyAdmin = async (next: RuntimeConfig['admin']): Promise<void> => {
    if (admin === null && next === null) return;
    const mod = await import('./admin.js');
    primaryMetrics ??= new mod.PrimaryMetrics({
      get configHash() {
        return hash;
      },
      get configLoadedAt() {
        return loadedAt;
      },
      metrics,
      workers,
    });
    admin = await mod.reconcileAdmin(admin, next, backend, logger);
  };
  let adminReady = applyAdmin(config.admin).catch((err: unknown) => logger.error({ err: String(err) }, 'admin endpoint not started'));

  const fork = (): void => {
    const w = cluster.fork();
    forkedAt.set(w.id, Date.now());
  };
  const forkAll = (): void => {
    for (let i = 0; i < workers; i++) fork();
  };
  if (reusePort && config.listen.some((l) => l.port === 0)) {
    pickPorts(config).then(
      (picked) => {
        listen = picked;
        forkAll();
      },
      (err: unknown) => {
        logger.fatal({ err: String(err) }, 'cannot pick a listen port for the workers');
        process.exit(1);
      },
    );
  } else forkAll();

  cluster.on('message', (worker, msg: unknown) => {
    if (!isWorkerMessage(msg)) return;
    if (msg.type === 'linedns-want-config') {
      worker.send({ type: 'linedns-config', config: forWorkers(config) } satisfies ConfigMessage);
      return;
    }
    ready.add(worker.id);
    // `worker`, not `pid`: pino's base already puts the primary's own pid on every line.
    logger.info({ worker: worker.process.pid, addresses: msg.addresses, reusePort }, 'worker ready');
    if (!announced && ready.size === workers) {
      announced = true;
      onReady(msg.addresses);
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker.id);
    const upMs = Date.now() - (forkedAt.get(worker.id) ?? Date.now());
    forkedAt.delete(worker.id);
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    delay = nextRestartDelay(delay, upMs);
    logger.error({ worker: worker.process.pid, code, signal, upMs, restartInMs: delay }, 'worker exited; starting another');
    const t = setTimeout(() => {
      timers.delete(t);
      if (!stopping) fork();
    }, delay);
    timers.add(t);
  });

  const stop = (): void => {
    stopping = true;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    void admin?.close();
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Reloads run one after another: the golden tests are async, and a later SIGHUP (or file
  // change) must not send its config before an earlier one's.
  let reloading = Promise.resolve();
  if (given === undefined) sources.configure(initial.sourceUrls, initial.sources);
  const reload = (): void => {
    reloading = reloading.then(async () => {
      const running = configHash(config);
      const loaded = await reloadWithSources(config.file, overrides, logger, sources, (c) => configHash(c) === running);
      if (loaded === null) {
        // Not sent: the workers keep serving the last good one.
        reloadFailures.value++;
        return;
      }
      const next = loaded.config;
      if (next.workers !== workers) logger.warn({ workers: next.workers, running: workers }, 'the number of workers changed: restart linedns to apply it');
      config = next;
      sources.accepted(loaded.documents);
      for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'linedns-config', config: forWorkers(config) } satisfies ConfigMessage);
      reloads.value++;
      hash = configHash(config);
      loadedAt = Date.now();
      const nextAdmin = config.admin;
      adminReady = adminReady.then(() => applyAdmin(nextAdmin));
      logger.info({ records: config.records.length, lines: Object.keys(config.smartLine).length }, 'configuration reloaded; sent to the workers');
      if (config.watch) watcher.follow(config);
      else watcher.stop();
    });
  };
  // The primary owns the files: it watches them, as it answers SIGHUP.
  const watcher = new ConfigWatcher(reload);
  if (config.watch) watcher.follow(config);
  process.on('SIGHUP', reload);
  // A new document at a URL source reloads as SIGHUP does; the workers never fetch.
  sources.start(reload);
}

/**
 * Runs in a worker: asks the primary for the configuration and resolves with it; each later
 * one (a reload in the primary) goes to `onReload`.
 */
export function configFromPrimary(onReload: (config: RuntimeConfig) => void): Promise<RuntimeConfig> {
  return new Promise((resolve) => {
    let first = true;
    const timer = setTimeout(() => {
      process.stderr.write(`linedns worker ${process.pid}: no configuration from the primary in ${CONFIG_WAIT_MS} ms\n`);
      process.exit(1);
    }, CONFIG_WAIT_MS);
    process.on('message', (msg: unknown) => {
      if ((msg as { type?: unknown } | null)?.type !== 'linedns-config') return;
      const { config } = msg as ConfigMessage;
      if (!first) return onReload(config);
      first = false;
      clearTimeout(timer);
      resolve(config);
    });
    process.send?.({ type: 'linedns-want-config' } satisfies WorkerMessage);
  });
}

/**
 * Runs in a worker once its server is up: answers the primary's admin requests (metrics, ready,
 * cache stats and flushes) about this worker's server.
 */
export function answerAdminRequests(server: LineDnsServer): void {
  process.on('message', (msg: unknown) => {
    if ((msg as { type?: unknown } | null)?.type !== 'linedns-admin') return;
    const req = msg as AdminRequest;
    const reply = (result: unknown): void => {
      process.send?.({ type: 'linedns-admin-reply', id: req.id, result } satisfies AdminReply);
    };
    const caches = server.stages().filter((s) => s.admin !== undefined);
    switch (req.op) {
      case 'ready':
        return reply(server.ready());
      case 'metrics':
        server.metricsJson().then(reply, (err: unknown) => {
          server.logger.error({ err: String(err) }, 'metrics for the primary failed');
          reply(null);
        });
        return;
      // admin.js is loaded already: the metrics the primary asks for first are built there.
      case 'cache':
        void import('./admin.js').then((m) => reply(m.cacheStats(caches)));
        return;
      case 'flush':
        void import('./admin.js').then((m) => reply(m.flushCaches(caches, req.name)));
        return;
    }
  });
}
