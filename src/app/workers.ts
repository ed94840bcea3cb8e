// --workers N: a cluster primary that owns the configuration (loads, validates and reloads it)
// and hands its last good one to every worker it forks, restarting dead workers with backoff.

import cluster from 'node:cluster';
import type { Logger } from 'pino';
import type { ConfigOverrides } from '../config/load.js';
import { ConfigWatcher } from './watch.js';
import { reloadWithSources, SourceSet } from './sources.js';
import { configHash } from './server.js';
import { Metrics } from '../lib/metrics.js';
import type { RuntimeConfig } from '../config/types.js';

/** Primary to worker: the configuration to serve (at start, and again after each reload). */
export interface ConfigMessage {
  type: 'linedns-config';
  config: RuntimeConfig;
}

/** The primary's counters that its workers' /metrics show (the workers never load nor fetch). */
export type PrimaryCounter = 'config_reload_failures_total' | 'source_fetch_failures_total';

/**
 * Primary to worker: something only the primary does failed `by` times more: a reload refused
 * (invalid, or its golden tests failed: nothing was sent), a URL source that failed. Each worker
 * adds it to its own counter, which its /metrics shows.
 */
export interface CountedMessage {
  type: 'linedns-counted';
  counter: PrimaryCounter;
  by: number;
}

/** Worker to primary. */
export type WorkerMessage = { type: 'linedns-want-config' } | { type: 'linedns-ready'; addresses: string[] };

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
  // Made before the first fork: a worker asking for its config is told the failures so far.
  const sources = given ?? new SourceSet(initial.sources, logger, new Metrics());
  let stopping = false;
  let announced = false;
  let delay = 0;
  const forkedAt = new Map<number, number>();
  const ready = new Set<number>();
  const timers = new Set<NodeJS.Timeout>();

  const fork = (): void => {
    const w = cluster.fork();
    forkedAt.set(w.id, Date.now());
  };
  for (let i = 0; i < workers; i++) fork();

  cluster.on('message', (worker, msg: unknown) => {
    if (!isWorkerMessage(msg)) return;
    if (msg.type === 'linedns-want-config') {
      worker.send({ type: 'linedns-config', config } satisfies ConfigMessage);
      // What failed before this worker was forked (a repository down at start) shows in its /metrics too.
      const failed = sources.metrics.get('source_fetch_failures_total');
      if (failed > 0) worker.send({ type: 'linedns-counted', counter: 'source_fetch_failures_total', by: failed } satisfies CountedMessage);
      return;
    }
    ready.add(worker.id);
    // `worker`, not `pid`: pino's base already puts the primary's own pid on every line.
    logger.info({ worker: worker.process.pid, addresses: msg.addresses }, 'worker ready');
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
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Reloads run one after another: the golden tests are async, and a later SIGHUP (or file
  // change) must not send its config before an earlier one's.
  let reloading = Promise.resolve();
  const counted = (counter: PrimaryCounter): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'linedns-counted', counter, by: 1 } satisfies CountedMessage);
  };
  if (given === undefined) sources.configure(initial.sourceUrls, initial.sources);
  sources.onFailure = () => counted('source_fetch_failures_total');
  const reload = (): void => {
    reloading = reloading.then(async () => {
      const running = configHash(config);
      const loaded = await reloadWithSources(config.file, overrides, logger, sources, (c) => configHash(c) === running);
      if (loaded === null) {
        // Not sent: the workers keep serving the last good one, and count the refusal.
        counted('config_reload_failures_total');
        return;
      }
      const next = loaded.config;
      if (next.workers !== workers) logger.warn({ workers: next.workers, running: workers }, 'the number of workers changed: restart linedns to apply it');
      config = next;
      sources.accepted(loaded.documents);
      for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'linedns-config', config } satisfies ConfigMessage);
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
export function configFromPrimary(onReload: (config: RuntimeConfig) => void, onCounted?: (counter: PrimaryCounter, by: number) => void): Promise<RuntimeConfig> {
  return new Promise((resolve) => {
    let first = true;
    const timer = setTimeout(() => {
      process.stderr.write(`linedns worker ${process.pid}: no configuration from the primary in ${CONFIG_WAIT_MS} ms\n`);
      process.exit(1);
    }, CONFIG_WAIT_MS);
    process.on('message', (msg: unknown) => {
      const type = (msg as { type?: unknown } | null)?.type;
      if (type === 'linedns-counted') {
        const m = msg as CountedMessage;
        return onCounted?.(m.counter, m.by);
      }
      if (type !== 'linedns-config') return;
      const { config } = msg as ConfigMessage;
      if (!first) return onReload(config);
      first = false;
      clearTimeout(timer);
      resolve(config);
    });
    process.send?.({ type: 'linedns-want-config' } satisfies WorkerMessage);
  });
}
