// The per-query state that travels down the pipeline and back: one object per query.
// Stages read the parsed query and leave a wire reply in `response`; the transport sends it.

import { isRejection, parseQuery, type ParsedQuery } from '../lib/dns/query.js';
import { errorReply } from '../lib/dns/template.js';
import { restoreQuestion } from '../lib/dns/message.js';
import type { LineSet } from './views.js';
import type { Counter } from '../lib/metrics.js';

export type Transport = 'udp' | 'tcp';

export interface ClientInfo {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/**
 * Sees a reply on its way out and returns the wire to send: `wire` itself when it only looks,
 * or a new buffer (never mutate `wire` in place: it may be a cached rendering still in use).
 */
export type ReplyHook = (ctx: QueryContext, wire: Buffer) => Buffer;

/**
 * Answers in place of the upstreams (`linedns test`'s mock answers): the whole wire reply to
 * `ctx.query` (its ID and question), or null when it has none; `upstreams` are the HOST:PORT the
 * stage would ask, in order, so the answerer can say whom a missing answer would come from.
 */
export type UpstreamAnswerer = (ctx: QueryContext, upstreams: readonly string[]) => Buffer | null;

/** Resolves the client's view; the engine hands each query the one a stage registered. */
export type LineClassifier = (ctx: QueryContext) => LineSet;

/**
 * Values one stage leaves on the context for later ones, by name (hono's ContextVariableMap):
 * empty here, since the core knows no stage; each stage adds the slots it fills or reads with
 * `declare module '../../core/context.js' { interface Slots { NAME: TYPE } }` in its own folder,
 * and names them in its definition's `provides`, so the loader can check who reads what.
 */
export interface Slots {}

/**
 * What the stages after a caller of `subquery` gave for the other question: the reply as they
 * left it (its own question, the client's ID), or null when none answered (or one dropped it).
 */
export interface SubAnswer {
  readonly response: Buffer | null;
  readonly answeredBy: string;
  /**
   * Whether that answer may be repeated within the second (a stage set `ctx.reusable` and no
   * reply hook touched it): a caller that builds its own answer from it may only mark its own
   * reusable when this holds.
   */
  readonly reusable: boolean;
  /** The slots the stages filled while answering it (the caller's own are untouched). */
  readonly slots: Readonly<Partial<Slots>>;
}

/** Subqueries nested inside one another at most (a stage chasing inside a chased answer...). */
const MAX_SUBQUERY_DEPTH = 4;

export class QueryContext {
  /** Set by the decode stage; stages after it may rely on it. */
  query: ParsedQuery | null = null;
  /** Wire-format reply; the transport truncates it for UDP when needed. */
  response: Buffer | null = null;
  /** Name of the stage that produced `response`, for logs and `explain`. */
  answeredBy = '';
  /** Why the query was dropped, when no reply is sent on purpose. */
  dropReason = '';
  /** Set by the engine from the classifier a stage registered at build time; see `lines`. */
  classifier: LineClassifier | null = null;
  /** The slots stages filled for this query; null (nothing allocated) until the first set(). */
  private slots: Partial<Slots> | null = null;
  /**
   * Set by a stage whose answer depends only on the query's octets, the client's address and the
   * current second (cache hits, local records): the UDP transport may then send the same answer
   * to a repeat within that second without running the pipeline, bumping this counter for it.
   */
  reusable: Counter | null = null;
  private lineSet: LineSet | null = null;
  /** Notes for `explain` and logs; null (and nothing allocated) unless tracing. */
  trace: string[] | null = null;
  /**
   * `linedns explain` without `--live`: a stage that would send traffic (forward) says what it
   * would do in a note and leaves the query unanswered (`dropReason`) instead.
   */
  offline = false;
  /**
   * Set by an app that answers for the upstreams (golden tests, offline): a stage that would
   * send traffic asks it instead, and behaves as `offline` when it has no answer. Null: send.
   */
  upstreamAnswerer: UpstreamAnswerer | null = null;
  /**
   * Reply hooks registered during handle(), run innermost first when the pipeline is done; null
   * (the usual case, checked once per query) until a stage registers one.
   */
  hooks: ReplyHook[] | null = null;
  /**
   * EDNS Client Subnet (RFC 7871), for queries that carry one. Set by a classifier that classified
   * the client by its ECS address (smartline's, for a `trustEcsFrom` sender): that address then
   * speaks for the client upstream and in the cache, and `ecsViewScope` is how many of its bits
   * decided the view. A classifier that ignores the ECS leaves both: the view then depended on
   * the socket address only, which no ECS the client sends changes.
   */
  ecsClassified = false;
  ecsViewScope = 0;
  /**
   * Bits of the client's ECS address an upstream answer depended on (forward, a cache hit): the
   * scope of the ECS option in the reply, with `ecsViewScope` when the answer varied by view.
   */
  ecsScope = 0;
  /** The query as decoded from the client's octets, kept once a stage rewrote the question. */
  private clientQuery: ParsedQuery | null = null;
  private pipelineRaw: Buffer;
  /** Subqueries running now, nested (see subquery). */
  private subqueries = 0;

  constructor(
    /** The query octets as the client sent them (the answer memo's key). */
    readonly clientRaw: Buffer,
    readonly client: ClientInfo,
    readonly transport: Transport,
    /** Milliseconds since an arbitrary epoch, from performance.now(). */
    readonly receivedAt: number,
  ) {
    this.pipelineRaw = clientRaw;
  }

  /**
   * The query octets the pipeline works on: the client's, or the ones a stage put in their
   * place with rewriteQuery() until the reply leaves. Replies copy their question from here.
   */
  get raw(): Buffer {
    return this.pipelineRaw;
  }

  /** True once a stage rewrote the question (the reply hooks then restore the client's). */
  get rewritten(): boolean {
    return this.clientQuery !== null;
  }

  /**
   * Registers a hook on the reply: hooks run when the pipeline is done and a reply is about to
   * leave, the last registered first (an inner stage's hook sees the reply before an outer
   * one's, as in the onion). A dropped query runs none. Turns the answer memo off for this
   * query, as the reply sent is then no longer only the pipeline's.
   */
  onReply(hook: ReplyHook): void {
    (this.hooks ??= []).push(hook);
  }

  /**
   * Replaces the question the later stages see: `raw` is decoded as the decode stage would,
   * keeps the client's ID, and becomes `ctx.raw` and `ctx.query` until the function returned is
   * called, which puts the previous ones back. The caller owns the reply: it must give it the
   * client's question again (the rewrite stage does so in its own handle(), after next(), so a
   * cache before it stores the client's reply). Needs the decode stage before the caller;
   * throws (SERVFAIL) when `raw` is not a query decode accepts.
   */
  replaceQuery(stage: string, raw: Buffer): () => void {
    const before = this.query;
    if (before === null) throw new Error(`${stage}: replacing the question needs the decode stage before it`);
    const p = parseQuery(raw);
    if (isRejection(p)) throw new Error(`${stage}: rewriteQuery: ${p.reason}`);
    p.id = before.id;
    const beforeRaw = this.pipelineRaw;
    this.clientQuery ??= before;
    this.pipelineRaw = raw;
    this.query = p;
    return () => {
      this.pipelineRaw = beforeRaw;
      this.query = before;
      if (beforeRaw === this.clientRaw) this.clientQuery = null;
    };
  }

  /**
   * Replaces the question the later stages see (CoreDNS's rewrite with its ResponseReverter), as
   * replaceQuery does, and registers a reply hook that puts the client's question back in the
   * reply (and the client's name on records owned by the rewritten one), and `raw`/`query` back
   * on the context, so hooks of earlier stages and observers see the client's question. The
   * hook runs when the whole pipeline is done, after a cache before this stage stored the reply.
   */
  rewriteQuery(stage: string, raw: Buffer): void {
    const beforeRaw = this.pipelineRaw;
    const restore = this.replaceQuery(stage, raw);
    this.onReply((_ctx, wire) => {
      restore();
      // restore() put back the query beforeRaw was decoded into.
      return restoreQuestion(wire, beforeRaw, this.query!.questionEnd);
    });
  }

  /**
   * Runs the stages after the caller (`next`, the caller's own) for another question and comes
   * back with their answer, the context then as it was: a stage that answered the client's
   * question only in part (a local CNAME whose target is not local) asks the rest of the
   * pipeline for the remainder and joins the two itself. `raw` (a whole query, header included)
   * is decoded as rewriteQuery decodes it and keeps the client's ID; during the run it is
   * `ctx.raw`/`ctx.query`, with no response, no slots (the caller's are not the other
   * question's) and not reusable. Reply hooks the later stages register run on their answer
   * before it is handed back, innermost first, as they would at the end of the pipeline; the
   * caller's hooks, slots, response and question are restored whether the run answers, finds
   * nothing or throws. Unlike rewriteQuery, nothing is left behind for the reply: the caller
   * answers. Nested at most MAX_SUBQUERY_DEPTH deep (a throw, so SERVFAIL, beyond).
   */
  subquery(stage: string, raw: Buffer, next: () => void | Promise<void>): SubAnswer | Promise<SubAnswer> {
    const before = this.query;
    if (before === null) throw new Error(`${stage}: subquery needs the decode stage before it`);
    if (this.subqueries >= MAX_SUBQUERY_DEPTH) throw new Error(`${stage}: subqueries nested deeper than ${MAX_SUBQUERY_DEPTH}`);
    const p = parseQuery(raw);
    if (isRejection(p)) throw new Error(`${stage}: subquery: ${p.reason}`);
    p.id = before.id;
    const saved = {
      raw: this.pipelineRaw,
      query: before,
      clientQuery: this.clientQuery,
      response: this.response,
      answeredBy: this.answeredBy,
      dropReason: this.dropReason,
      reusable: this.reusable,
      slots: this.slots,
      hooks: this.hooks,
    };
    this.pipelineRaw = raw;
    this.query = p;
    this.response = null;
    this.answeredBy = '';
    this.dropReason = '';
    this.reusable = null;
    this.slots = null;
    this.hooks = null;
    this.subqueries++;
    if (this.tracing) this.note(`${stage}: asking the stages after it for ${p.name} type ${p.qtype}`);
    // Whatever happens inside, the caller gets its own state back: a throw reaches the engine,
    // whose SERVFAIL must carry the caller's question, not the other one.
    const restore = (answered: boolean): SubAnswer => {
      const hooks = this.hooks;
      let response = this.response;
      try {
        // After a throw the hooks are skipped, as the engine skips them: the error is the news.
        if (answered && hooks !== null) for (let i = hooks.length - 1; i >= 0 && response !== null; i--) response = hooks[i]!(this, response);
        return { response, answeredBy: this.answeredBy, reusable: this.reusable !== null && hooks === null, slots: this.slots ?? {} };
      } finally {
        this.pipelineRaw = saved.raw;
        this.query = saved.query;
        this.clientQuery = saved.clientQuery;
        this.response = saved.response;
        this.answeredBy = saved.answeredBy;
        this.dropReason = saved.dropReason;
        this.reusable = saved.reusable;
        this.slots = saved.slots;
        this.hooks = saved.hooks;
        this.subqueries--;
      }
    };
    let r: void | Promise<void>;
    try {
      r = next();
    } catch (err) {
      restore(false);
      throw err;
    }
    if (r) {
      return r.then(
        () => restore(true),
        (err: unknown) => {
          restore(false);
          throw err;
        },
      );
    }
    return restore(true);
  }

  /**
   * A detached copy of this query for work that may outlive its reply (the cache refreshing an
   * answer in the background): the same client, transport, arrival time, question (its octets
   * copied, as the client's buffer is the transport's), view (and with it what the classifier
   * decided about the client's ECS), app settings (offline, the upstream answerer) and the slots
   * filled so far (a shallow copy: they are the earlier stages' input to
   * the later ones), with no response, drop reason, hooks or reusable mark, and its own trace
   * when this one is tracing. Run the stages after the caller on it with `next(fork)`: nothing
   * they do reaches this context, which may have answered and left meanwhile. Costs a context,
   * a copy of the question and of the slots; nothing on the path of a query that does not fork.
   */
  fork(): QueryContext {
    const f = new QueryContext(Buffer.from(this.pipelineRaw), this.client, this.transport, this.receivedAt);
    f.query = this.query === null ? null : { ...this.query };
    f.classifier = this.classifier;
    f.lineSet = this.lineSet;
    // What the classification decided travels with the view it made: a fork whose lineSet came
    // already classified never runs the classifier, and without these would not trust the ECS
    // the client's view was chosen by (forward would send the socket address upstream instead).
    f.ecsClassified = this.ecsClassified;
    f.ecsViewScope = this.ecsViewScope;
    f.slots = this.slots === null ? null : { ...this.slots };
    f.offline = this.offline;
    f.upstreamAnswerer = this.upstreamAnswerer;
    // Subqueries nest no deeper on a fork than they could here.
    f.subqueries = this.subqueries;
    if (this.trace !== null) f.trace = [];
    return f;
  }

  /**
   * After the hooks ran (or were skipped for a drop, or failed): the context describes the
   * client's query again, whatever a stage rewrote.
   */
  restoreClientQuery(): void {
    if (this.clientQuery === null) return;
    this.pipelineRaw = this.clientRaw;
    this.query = this.clientQuery;
    this.clientQuery = null;
  }

  /** A slot an earlier stage filled for this query, or undefined. */
  get<K extends keyof Slots>(slot: K): Slots[K] | undefined {
    return this.slots === null ? undefined : this.slots[slot];
  }

  set<K extends keyof Slots>(slot: K, value: Slots[K]): void {
    (this.slots ??= {})[slot] = value;
  }

  /** The client's smart-line lines, classified once on first use. */
  get lines(): LineSet | null {
    if (this.lineSet === null && this.classifier !== null) this.lineSet = this.classifier(this);
    return this.lineSet;
  }

  /** Whether the client's ECS option speaks for it: the classifier (run now, if not yet) believed it. */
  get ecsTrusted(): boolean {
    return this.lines !== null && this.ecsClassified;
  }

  get tracing(): boolean {
    return this.trace !== null;
  }

  set tracing(on: boolean) {
    this.trace = on ? (this.trace ?? []) : null;
  }

  note(message: string): void {
    if (this.trace !== null) this.trace.push(message);
  }

  respond(stage: string, response: Buffer): void {
    this.response = response;
    this.answeredBy = stage;
  }

  /**
   * Answers with `rcode` and no records (REFUSED, NXDOMAIN, SERVFAIL, ...): the question and an
   * OPT are echoed as the client sent them. Needs the decoded query.
   */
  respondError(stage: string, rcode: number): void {
    const q = this.query;
    if (q === null) throw new Error(`${stage}: respondError needs the decode stage before it`);
    this.respond(stage, errorReply(this.raw, q.id, q.flags, rcode, q.questionEnd, q.edns));
  }
}
