// The running server: binds UDP and TCP on every listen address, owns the pipeline, and swaps
// in a reloaded configuration while keeping the last good one when the new one is invalid.

import type { Logger } from 'pino';
import { formatHostPort } from '../lib/net/address.js';
import { failureLines, type ConfigOverrides } from '../config/load.js';
import { reloadWithSources, SourceSet } from './sources.js';
import type { PipelineEntry, RuntimeConfig } from '../config/types.js';
import { Metrics, QueryStats, type Counter } from '../lib/metrics.js';
import { buildStages, memoSafeWith, type BuiltStage } from '../stages/index.js';
import type { PipelineEnv, Stage, StageHealth } from '../core/stage.js';
import { Engine } from '../core/engine.js';
import { ViewRegistry } from '../core/views.js';
import type { QueryContext } from '../core/context.js';
import { startTcp, TcpConnectionCounts, type TcpTransport } from '../transport/tcp.js';
import { startUdp, type UdpTransport } from '../transport/udp.js';
import { createHash } from 'node:crypto';
import type { AdminConfig } from '../config/types.js';
import type { AdminServer, AdminSource, ServerRegistry } from './admin.js';
import { SocketErrorLog } from '../lib/net/listen.js';

export interface BoundAddress {
  protocol: 'udp' | 'tcp';
  host: string;
  port: number;
}

export function formatAddress(a: BoundAddress): string {
  return `${a.protocol}://${formatHostPort(a.host, a.port)}`;
}

export interface StartOptions {
  logger: Logger;
  metrics?: Metrics;
  /** Flags to re-apply when the config file is reloaded. */
  overrides?: ConfigOverrides;
  /**
   * A --workers worker: the primary serves the admin endpoint (and asks this server over IPC),
   * so none is started here. Default: a process of its own.
   */
  worker?: boolean;
  /** Bind every listen socket with reusePort (Node >= 22.12, a --workers worker): see workers.ts. */
  reusePort?: boolean;
  /** The URL sources the config was loaded from (loadForStart); polled while the server runs. */
  sources?: SourceSet;
}

async function bindPair(host: string, port: number, server: LineDnsServer): Promise<[UdpTransport, TcpTransport]> {
  // With port 0, UDP picks the port and TCP must get the same one: retry if it is taken.
  for (let attempt = 0; ; attempt++) {
    const opts = { errors: server.socketErrors, reusePort: server.reusePort };
    const udp = await startUdp(host, port, () => server.engine, server.metrics, () => server.config.maxUdpSize, opts);
    try {
      const tcp = await startTcp(host, udp.port, () => server.engine, server.metrics, () => server.config.tcp, server.tcpCounts, opts);
      return [udp, tcp];
    } catch (err) {
      await udp.close();
      if (port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}

/** A pipeline built from the config's entries, with the stages' own word on the answer memo. */
export interface BuiltEngine {
  engine: Engine;
  built: readonly BuiltStage[];
}

export async function buildEngine(pipeline: readonly PipelineEntry[], env: PipelineEnv): Promise<BuiltEngine> {
  const built = await buildStages(pipeline, env);
  return { engine: new Engine(built.map((b) => b.stage), env, built.every((b) => b.memoSafe)), built };
}

/** Whether two pipelines have the same stages in the same order, options aside. */
function sameStages(a: readonly PipelineEntry[], b: readonly PipelineEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.stage === b[i]!.stage);
}

/**
 * First 12 hex digits of the sha256 of the configuration's JSON: tells which config a process
 * runs (/metrics). Zones count by their digest, as their records may be many.
 */
export function configHash(config: RuntimeConfig): string {
  const json = JSON.stringify(config, function (this: unknown, key: string, value: unknown): unknown {
    if (key === 'records' && typeof this === 'object' && this !== null && 'digest' in this) return undefined;
    return typeof value === 'bigint' ? value.toString() : value;
  });
  return createHash('sha256').update(json).digest('hex').slice(0, 12);
}

/** How long a replaced pipeline lives on for queries in flight: above forward's longest deadline. */
const DRAIN_MS = 125_000;

export class LineDnsServer implements AdminSource {
  engine!: Engine;
  /** The admin endpoint, when `admin` is configured. */
  admin: AdminServer | null = null;
  configHash: string;
  configLoadedAt = Date.now();
  private closing = false;
  private built: readonly BuiltStage[] = [];
  /** Pipelines replaced by a reload, kept until their queries in flight are done (or close()). */
  private readonly retiring = new Set<Engine>();
  readonly udp: UdpTransport[] = [];
  readonly tcp: TcpTransport[] = [];
  readonly addresses: BoundAddress[] = [];
  /** TCP connection caps hold across all listen addresses (per process with --workers). */
  readonly tcpCounts = new TcpConnectionCounts();
  private reloading: Promise<boolean> | null = null;
  /** URL sources: polled, and brought up to date by each reload. */
  readonly sources: SourceSet;
  private reloadAgain: Promise<boolean> | null = null;
  /** Socket errors of every listener, logged at most once per 10 s per kind. */
  readonly socketErrors: SocketErrorLog;
  /** A --workers worker's metrics, asked for by the primary (made on its first ask). */
  private workerRegistry: ServerRegistry | null = null;

  private constructor(
    public config: RuntimeConfig,
    readonly logger: Logger,
    readonly metrics: Metrics,
    private readonly overrides: ConfigOverrides,
    readonly worker: boolean,
    readonly reusePort: boolean,
    sources: SourceSet | undefined,
  ) {
    this.configHash = configHash(config);
    this.socketErrors = new SocketErrorLog(logger);
    this.countReplies(config.admin !== null);
    // Without one (a --workers worker, an embedding): a reload fetches what it needs, and a
    // worker, whose primary loads for it, never reads a copy on disk.
    this.sources = sources ?? new SourceSet(config.sources, logger, metrics);
    // Made now so that /metrics shows them (at 0) before the first reload.
    metrics.counter('config_reloads_total', 'successful reloads');
    metrics.counter('config_reload_failures_total', 'reloads refused: invalid config');
  }

  static async start(config: RuntimeConfig, opts: StartOptions): Promise<LineDnsServer> {
    const server = new LineDnsServer(config, opts.logger, opts.metrics ?? new Metrics(), opts.overrides ?? {}, opts.worker === true, opts.reusePort === true, opts.sources);
    ({ engine: server.engine, built: server.built } = await buildEngine(config.pipeline, server.env(config)));
    try {
      for (const l of config.listen) {
        try {
          const [udp, tcp] = await bindPair(l.host, l.port, server);
          server.udp.push(udp);
          server.tcp.push(tcp);
          server.addresses.push({ protocol: 'udp', host: l.host, port: udp.port }, { protocol: 'tcp', host: l.host, port: tcp.port });
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // A host without IPv6 (or IPv4) still serves on the addresses it has.
          if ((code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT') && config.listen.length > 1) {
            server.logger.warn({ address: `${l.host}:${l.port}`, code }, 'cannot listen on this address; skipping it');
            continue;
          }
          throw new Error(`cannot listen on ${l.host}:${l.port}: ${code ?? String(err)}`);
        }
      }
      if (server.addresses.length === 0) throw new Error('no listen address could be bound');
      if (config.admin !== null && !server.worker) server.admin = await server.startAdmin(config.admin);
    } catch (err) {
      await server.close();
      throw err;
    }
    for (const s of server.engine.stages) s.started?.();
    // A new document at a URL source reloads as SIGHUP does (and through the same golden gate).
    // Only for sources handed in: a --workers worker gets its configuration from the primary.
    if (opts.sources !== undefined) server.sources.start(() => void server.reloadFromFile());
    return server;
  }

  private async startAdmin(a: AdminConfig): Promise<AdminServer> {
    // Loaded only when configured: prom-client and explain's dns-packet cost a server without an
    // admin endpoint memory it would never use.
    const { startAdmin, localBackend } = await import('./admin.js');
    return startAdmin(a, localBackend(this), this.logger);
  }

  /** A reload: re-binds the admin endpoint when its address changed, or applies its new allow list. */
  private async applyAdmin(next: AdminConfig | null): Promise<void> {
    this.countReplies(next !== null);
    if (this.worker || (this.admin === null && next === null)) return;
    const { reconcileAdmin, localBackend } = await import('./admin.js');
    this.admin = await reconcileAdmin(this.admin, next, () => localBackend(this), this.logger);
  }

  /**
   * The transports count every reply (lib/metrics QueryStats) only while there is an admin
   * endpoint to show them: a server without one pays a null check per reply.
   */
  private countReplies(on: boolean): void {
    if (!on) this.metrics.queries = null;
    else this.metrics.queries ??= new QueryStats();
  }

  /** For the --workers primary: this worker's metrics as prom-client JSON, to be summed with the others'. */
  async metricsJson(): Promise<unknown[]> {
    if (this.workerRegistry === null) {
      const { ServerRegistry } = await import('./admin.js');
      this.workerRegistry = new ServerRegistry(this);
    }
    return this.workerRegistry.json();
  }

  stages(): readonly Stage[] {
    return this.engine.stages;
  }

  /** /readyz: the config is loaded (it is, once constructed) and sockets bound, and every stage can work. */
  ready(): StageHealth {
    if (this.closing) return { ok: false, reason: 'shutting down' };
    if (this.addresses.length === 0) return { ok: false, reason: 'listen sockets not bound' };
    for (const s of this.engine.stages) {
      const h = s.health?.();
      if (h !== undefined && !h.ok) return { ok: false, reason: h.reason ?? `${s.name} not healthy` };
    }
    return { ok: true };
  }

  private env(config: RuntimeConfig): PipelineEnv {
    // One view registry per pipeline built: its stages register their classifier in it, and a
    // rebuilt pipeline starts afresh while queries in flight finish with the old one.
    return { logger: this.logger, metrics: this.metrics, config, views: new ViewRegistry<QueryContext>() };
  }

  /** Port of the first listen address (tests listen on port 0). */
  get port(): number {
    return this.addresses[0]!.port;
  }

  /**
   * Applies a new configuration: stages reload in place with their new options (the cache keeps
   * its entries) unless the list of stages changed, in which case a new pipeline replaces the
   * old one. Listen addresses need a restart.
   */
  async apply(next: RuntimeConfig): Promise<void> {
    const prev = this.config;
    if (JSON.stringify(prev.listen) !== JSON.stringify(next.listen)) {
      this.logger.warn('listen addresses changed: restart linedns to apply them');
    }
    if (!sameStages(prev.pipeline, next.pipeline)) {
      const old = this.engine;
      ({ engine: this.engine, built: this.built } = await buildEngine(next.pipeline, this.env(next)));
      this.config = next;
      for (const s of this.engine.stages) s.started?.();
      // Queries in flight finish on the old stages; give them time for the longest upstream
      // deadline a stage may be waiting on.
      this.retiring.add(old);
      setTimeout(() => {
        this.retiring.delete(old);
        void old.close();
      }, DRAIN_MS).unref();
      this.loaded(next);
      await this.applyAdmin(next.admin);
      return;
    }
    const stages = this.engine.stages;
    for (let i = 0; i < stages.length; i++) await stages[i]!.reload?.(next, next.pipeline[i]!.options);
    this.engine.configured(next, memoSafeWith(next.pipeline, this.built));
    this.config = next;
    this.loaded(next);
    await this.applyAdmin(next.admin);
  }

  private loaded(config: RuntimeConfig): void {
    this.configHash = configHash(config);
    this.configLoadedAt = Date.now();
  }

  /**
   * Re-reads the config file (SIGHUP). Returns false, keeping the running config, when invalid.
   * A SIGHUP during a reload is not lost: one more reload runs after the current one, since the
   * file may have changed after the current one read it.
   */
  reloadFromFile(): Promise<boolean> {
    if (this.reloading) {
      this.reloadAgain ??= this.reloading.then(() => {
        this.reloadAgain = null;
        return this.reloadFromFile();
      });
      return this.reloadAgain;
    }
    const run = (async (): Promise<boolean> => {
      // Yield first: were loadConfig to throw synchronously, the `finally` below would run before
      // `this.reloading` is assigned, and that settled promise would block every later reload.
      await Promise.resolve();
      try {
        return await this.reloadOnce();
      } finally {
        this.reloading = null;
      }
    })();
    this.reloading = run;
    return run;
  }

  private async reloadOnce(): Promise<boolean> {
    const running = this.configHash;
    const loaded = await reloadWithSources(this.config.file, this.overrides, this.logger, this.sources, (c) => configHash(c) === running);
    // A config whose golden tests fail is refused like an invalid one (the gate logs why).
    if (loaded === null) {
      this.failures.value++;
      return false;
    }
    const ok = await this.applyReloaded(loaded.config);
    if (ok) this.sources.accepted(loaded.documents);
    return ok;
  }

  /**
   * Applies a configuration already loaded and validated (by this process, or by the primary
   * with --workers), logging and counting the reload. Returns false, keeping the running one, on failure.
   */
  async applyReloaded(config: RuntimeConfig): Promise<boolean> {
    try {
      await this.apply(config);
      this.metrics.counter('config_reloads_total', 'successful reloads').value++;
      this.logger.info({ records: config.records.length, lines: Object.keys(config.smartLine).length }, 'configuration reloaded');
      return true;
    } catch (err) {
      this.refused(err);
      return false;
    }
  }

  private refused(err: unknown): void {
    this.failures.value++;
    this.logger.error({ errors: failureLines(err) }, 'reload failed; keeping the last good configuration');
  }

  private get failures(): Counter {
    return this.metrics.counter('config_reload_failures_total', 'reloads refused: invalid config');
  }

  async close(): Promise<void> {
    this.closing = true;
    this.sources.stop();
    const admin = this.admin;
    this.admin = null;
    await admin?.close();
    await Promise.all([...this.udp, ...this.tcp].map((t) => t.close()));
    await this.engine?.close();
    for (const old of this.retiring) await old.close();
    this.retiring.clear();
  }
}
