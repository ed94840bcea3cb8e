// The stage contract: one small onion-style interface every built-in and user stage implements.
// A stage may answer and stop, call next() and post-process, or only observe.

import type { Logger } from 'pino';
import type { ConfigCode, PipelineFacts, RuntimeConfig } from '../config/types.js';
import type { Metrics } from '../lib/metrics.js';
import type { ClientInfo, QueryContext, Transport } from './context.js';
import type { ViewRegistry } from './views.js';

/**
 * next() and handle() may complete synchronously (return undefined) or asynchronously (return a
 * promise). Built-in stages stay synchronous on the cache-hit path so a hit never waits a tick;
 * an `async` user stage that simply `await`s next() works unchanged. Given a context, next()
 * runs the stages after the caller on it instead of on the query's own: a context from
 * `ctx.fork()`, for work that may outlive the client's reply (the cache's background refresh).
 */
export type Next = (ctx?: QueryContext) => void | Promise<void>;

/** One reply that left, as a query log needs it; built only when some stage observes. */
export interface ReplyInfo {
  /** When it was sent, milliseconds since the Unix epoch. */
  readonly time: number;
  readonly client: ClientInfo;
  readonly transport: Transport;
  /** The query's ID (the reply's). */
  readonly id: number;
  /** The question as the client asked it (lower case, no trailing dot); '' when undecodable. */
  readonly name: string;
  /** QTYPE, or 0 when undecodable. */
  readonly qtype: number;
  /** The reply's RCODE, with the extended bits of its OPT (16: BADVERS). */
  readonly rcode: number;
  /** ANCOUNT of the reply as sent (0 when truncated). */
  readonly answers: number;
  /** The stage that answered (for a memo hit, the one that made the kept answer). */
  readonly answeredBy: string;
  /** Sent truncated (TC set) because it was too large for the client's UDP size. */
  readonly truncated: boolean;
  /** A UDP repeat answered from the answer memo without running the pipeline. */
  readonly memo: boolean;
  /** From the query's arrival to the send, in microseconds. */
  readonly durationUs: number;
  /** Octets sent (without the TCP length prefix). */
  readonly size: number;
  /**
   * The query's context as the pipeline left it (slots, `lines` on demand); null for a memo hit,
   * which ran no stage. Read it, never change it: the reply has left.
   */
  readonly context: QueryContext | null;
}

export interface Stage<O = unknown> {
  readonly name: string;
  handle(ctx: QueryContext, next: Next): void | Promise<void>;
  /**
   * Sees every reply that leaves, memo hits and truncated UDP replies included, after it was
   * sent (it cannot change it: use ctx.onReply for that). Collected once when the pipeline is
   * built; a pipeline without any costs the transports one null check per reply.
   */
  observe?(reply: ReplyInfo): void;
  /**
   * Asked before each reply is described for observe(): false when this stage will not look at
   * it (a sampling log), so that when no observer wants a reply none is built. A stage without
   * it wants every reply. observe() may still be called for a reply another observer wanted:
   * it keeps its own answer to this call.
   */
  observeNext?(): boolean;
  /**
   * Declares that handle() only calls next() and changes neither the context nor the reply (no
   * respond, no onReply, no rewriteQuery): such a user stage keeps the UDP answer memo on, and
   * its observe() sees the memo hits too. Any other user stage turns the memo off.
   */
  readonly observesOnly?: boolean;
  /**
   * The server now listens: traffic that may come back through the listeners can start (the
   * forward stage's loop probe). Called once per stage, after start or a pipeline rebuild.
   */
  started?(): void;
  /**
   * Apply a new, already validated configuration in place (SIGHUP): `options` are this stage's
   * own, from its pipeline entry and top-level keys, with the schema's defaults.
   */
  reload?(config: RuntimeConfig, options: O): void | Promise<void>;
  /** Release sockets and timers. */
  close?(): void | Promise<void>;
  /**
   * Whether this stage can do its work now, asked by the admin endpoint's /readyz (never on the
   * query path): forward is not ready when every upstream is marked down. A stage without it is.
   */
  health?(): StageHealth;
  /**
   * What the admin endpoint's /cache shows and POST /cache/flush empties, for a stage that keeps
   * answers: the app finds caches by this hook rather than by importing the cache stage.
   */
  readonly admin?: StageAdmin;
  /**
   * Metrics of this stage's own that are not plain counters of env.metrics (per upstream, with
   * labels), read when /metrics is scraped: kept in the stage's own state, they cost the query
   * path no more than that state's upkeep.
   */
  metrics?(): readonly StageMetric[];
}

export type StageMetric = CounterOrGaugeMetric | HistogramMetric;

interface MetricBase {
  /** Without the linedns_ prefix, e.g. upstream_queries_total; the same labels on every sample. */
  readonly name: string;
  readonly help: string;
  /**
   * How the --workers primary combines the workers' samples of the same labels: summed (the
   * default: counters, sizes), or the least / greatest (an up/down gauge: `min`, up only when
   * up in every worker).
   */
  readonly aggregate?: 'sum' | 'min' | 'max';
}

export interface CounterOrGaugeMetric extends MetricBase {
  readonly type: 'counter' | 'gauge';
  readonly samples: readonly { readonly labels: Readonly<Record<string, string>>; readonly value: number }[];
}

/**
 * A histogram a stage keeps itself (an array of counts per label set, updated on the query path
 * with one increment): `buckets` are the upper bounds (seconds for latencies), ascending, +Inf
 * implied; each sample's `counts` has one count per bucket plus one for +Inf (not cumulative),
 * `sum` the summed observations.
 */
export interface HistogramMetric extends MetricBase {
  readonly type: 'histogram';
  readonly buckets: readonly number[];
  readonly samples: readonly { readonly labels: Readonly<Record<string, string>>; readonly counts: readonly number[]; readonly sum: number }[];
}

export interface StageHealth {
  readonly ok: boolean;
  /** Why not, in words, when not ok. */
  readonly reason?: string;
}

export interface StageAdmin {
  /** Numbers to show (the cache: entries, hits, misses). */
  stats(): Record<string, number>;
  /** Drops what is kept for `name` (any spelling; no trailing dot needed), or everything; returns how many answers went. */
  flush(name?: string): number;
}

/** What stages share: logging, counters, and the configuration they were built from. */
export interface StageEnv {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: RuntimeConfig;
  /**
   * The server's view classifier: the smartline stage registers its own when built; a user
   * stage may register another (`env.views.register(ctx => env.views.intern([...lines]))`).
   */
  readonly views: ViewRegistry<QueryContext>;
  /** What the stages around this one declare they provide (set per stage when it is built). */
  readonly position: PipelinePosition;
}

/** What the app gives a pipeline to build; each stage's env adds its own position. */
export type PipelineEnv = Omit<StageEnv, 'position'>;

/** A stage's place in its pipeline, told by the other stages' declarations rather than their names. */
export interface PipelinePosition {
  providedBefore(name: string): boolean;
  providedAfter(name: string): boolean;
}

/**
 * Builds a stage. `options` are the entry's: for a built-in stage, validated against its schema
 * with the defaults filled in; for a user module, the object of `{"./mine.js": {...}}` or undefined.
 */
export type StageFactory<O = unknown> = (options: O, env: StageEnv) => Stage<O> | Promise<Stage<O>>;

/** A JSON Schema (draft 2020-12) node, as written in a stage's options.ts. */
export type JsonSchema = { readonly [keyword: string]: unknown };

/**
 * Reports a problem with one option, at the place in the config files it came from. The code
 * (src/config/codes.ts, explained in docs/errors.md) says which kind, and so its severity.
 */
export type OptionsReport = (path: readonly (string | number)[], code: ConfigCode, message: string) => void;

/** A stage's options: the one place their shape and defaults are written. */
export interface OptionsSpec<O> {
  /**
   * The options object: `type: object` with `properties` (each with its `default`, where it has
   * one) and `additionalProperties: false`. The pipeline entry `{"NAME": {...}}` is validated
   * against it, and linedns.schema.json is generated from it (`npm run schemas`).
   */
  readonly schema: JsonSchema;
  /**
   * Top-level keys of linedns.json read as this stage's options, the form that came before
   * options sat on the pipeline entry: key -> option name, or '.' for a key whose object holds
   * options. An entry's own options win over these.
   */
  readonly topLevel?: Readonly<Record<string, string>>;
  /** Without any option given the stage is off (`create` gets null) rather than on with defaults. */
  readonly offWhenAbsent?: boolean;
  /** What a schema cannot say (a CIDR, one bound above another), reported with positions. */
  check?(options: NonNullable<O>, report: OptionsReport): void;
}

/**
 * Something a stage needs from the pipeline: a capability another stage declares in `provides`
 * (a slot it fills on the context, or a service such as the view classifier).
 */
export interface Requirement<O = unknown> {
  readonly name: string;
  /**
   * Where the provider must stand: before this stage (a slot read in handle), after it, or
   * anywhere (a service registered when the pipeline is built, such as the view classifier).
   */
  readonly where: 'before' | 'after' | 'anywhere';
  /** Why, in words for the error message when the pipeline breaks it (may name the data involved). */
  readonly reason: string | ((facts: PipelineFacts) => string);
  /** Needed only when this holds for the stage's options and the loaded data (default: always). */
  when?(options: O, config: PipelineFacts): boolean;
}

/**
 * A built-in stage, or a user module's export: its name, options, what it needs and gives (the
 * loader checks every pipeline against these, fastify's checkDependencies idea), and its factory.
 */
export interface StageDefinition<O = unknown> {
  readonly name: string;
  /** One line: what the stage does. */
  readonly summary: string;
  readonly options?: OptionsSpec<O>;
  readonly requires?: readonly Requirement<O>[];
  readonly provides?: readonly string[];
  /**
   * Whether the UDP answer memo may answer a repeat within the second without running this stage:
   * true when the stage's answer depends only on the query's octets, the client's address and
   * the current second (and it sees nothing it must count). Default false.
   */
  readonly memoSafe?: boolean | ((options: O) => boolean);
  /**
   * Top-level keys of linedns.json holding data this stage serves (`records`, `upstreams`): set
   * while the stage is not in the pipeline, they do nothing, and the loader warns.
   */
  readonly dataKeys?: readonly string[];
  readonly create: StageFactory<O>;
}
