// Runs the composed pipeline for one query and contains its failures: a stage that throws gets
// the client a SERVFAIL (or nothing, for an undecodable packet), is logged and counted, never a crash.

import { Rcode } from '../lib/dns/constants.js';
import { compose, type Handler } from './compose.js';
import type { ClientInfo, QueryContext } from './context.js';
import type { PipelineEnv, ReplyInfo, Stage } from './stage.js';
import type { Counter } from '../lib/metrics.js';
import type { RuntimeConfig } from '../config/types.js';
import { AnswerMemo } from './answer-memo.js';

const UNANSWERED_RCODE = { refused: Rcode.REFUSED, nxdomain: Rcode.NXDOMAIN, servfail: Rcode.SERVFAIL } as const;

export class Engine {
  private readonly handler: Handler;
  private readonly errors: Counter;
  private lastErrorLog = 0;
  /**
   * Repeats of a query within a second, from the same client, answered without the pipeline;
   * null when turned off (`answerMemo: false`) or when some stage does not declare itself memo
   * safe (a user stage whose behaviour is unknown, a rate limit that counts every query).
   */
  memo: AnswerMemo | null = null;
  /**
   * Calls every stage's observe() with a reply that left; null when no stage observes, so the
   * transports build no ReplyInfo at all then. Called by the transports after each send.
   */
  readonly observer: ((reply: ReplyInfo) => void) | null;
  /**
   * Whether some observer wants the reply about to be sent: the transports build a ReplyInfo
   * only then (with `observer` not null). A sampling observer keeps the others' cost too.
   */
  readonly wantsReply: () => boolean;
  private readonly observerErrors: Counter;

  /**
   * `memoSafe`: whether every stage declared that the memo may answer for it. The caller works
   * it out from the stages' definitions; the core imports no stage.
   */
  constructor(readonly stages: readonly Stage[], private readonly env: PipelineEnv, memoSafe: boolean) {
    this.handler = compose(stages);
    this.errors = env.metrics.counter('pipeline_errors_total', 'queries whose pipeline threw; answered SERVFAIL');
    this.observerErrors = env.metrics.counter('observer_errors_total', 'replies a stage observe() threw on (the reply was sent)');
    const observers = stages.filter((s) => typeof s.observe === 'function');
    this.observer = observers.length === 0 ? null : (reply) => this.notify(observers, reply);
    const choosy = observers.filter((s) => typeof s.observeNext === 'function');
    const always = choosy.length < observers.length;
    // Every choosy observer is asked, as each counts the replies it is offered (1 in N).
    this.wantsReply = () => {
      let any = always;
      for (const s of choosy) if (s.observeNext!()) any = true;
      return any;
    };
    this.configured(env.config, memoSafe);
  }

  private notify(observers: readonly Stage[], reply: ReplyInfo): void {
    for (const s of observers) {
      // One observer failing must neither stop the others nor reach the transport's handler.
      try {
        s.observe!(reply);
      } catch (err) {
        this.observerErrors.value++;
        this.logLimited(err, s.name, reply.client.address, 'observe() failed');
      }
    }
  }

  /** For the observer: a reply the pipeline produced, as sent (`wire`, truncated or not). */
  static replyInfo(ctx: QueryContext, wire: Buffer, truncated: boolean, now: number): ReplyInfo {
    const q = ctx.query;
    return info(ctx.client, ctx.transport, q?.name ?? '', q?.qtype ?? 0, ctx.answeredBy, wire, truncated, false, ctx.receivedAt, now, ctx);
  }

  /** For the observer: a UDP repeat answered from the memo. */
  static memoReplyInfo(client: ClientInfo, name: string, qtype: number, answeredBy: string, wire: Buffer, receivedAt: number, now: number): ReplyInfo {
    return info(client, 'udp', name, qtype, answeredBy, wire, (wire[2]! & 0x02) !== 0, true, receivedAt, now, null);
  }

  /** After the stages took a new configuration: answers kept from the old one are dropped. */
  configured(config: RuntimeConfig, memoSafe: boolean): void {
    this.memo = config.answerMemo && memoSafe ? new AnswerMemo() : null;
  }

  /** Runs the pipeline, then the reply hooks when a stage registered any. */
  run(ctx: QueryContext): void | Promise<void> {
    // The view is classified lazily (ctx.lines), by the classifier a stage registered when built.
    ctx.classifier = this.env.views.classifier;
    try {
      const r = this.handler(ctx);
      if (r) return r.then(() => this.done(ctx), (err: unknown) => this.fail(ctx, err));
    } catch (err) {
      this.fail(ctx, err);
      return;
    }
    // The only costs on a query that was answered and has no hooks: two null checks.
    if (ctx.response === null) this.unanswered(ctx);
    if (ctx.hooks !== null) this.leave(ctx);
  }

  private done(ctx: QueryContext): void {
    if (ctx.response === null) this.unanswered(ctx);
    this.leave(ctx);
  }

  /**
   * No stage answered and none dropped the query on purpose (a pipeline without forward that
   * found nothing): the client gets `unanswered` (REFUSED by default) rather than a timeout.
   */
  private unanswered(ctx: QueryContext): void {
    if (ctx.dropReason !== '' || ctx.query === null) return;
    ctx.note(`no stage answered: ${this.env.config.unanswered.toUpperCase()}`);
    ctx.respondError('unanswered', UNANSWERED_RCODE[this.env.config.unanswered]);
  }

  /** Reply hooks, innermost first, each handed what the one before returned. */
  private leave(ctx: QueryContext): void {
    const hooks = ctx.hooks;
    if (hooks === null) return;
    try {
      for (let i = hooks.length - 1; i >= 0 && ctx.response !== null; i--) ctx.response = hooks[i]!(ctx, ctx.response);
    } catch (err) {
      this.fail(ctx, err);
      return;
    }
    ctx.restoreClientQuery();
  }

  private logLimited(err: unknown, stage: string, client: string, message: string): void {
    const now = Date.now();
    // At most one log line a second, so a poison query cannot flood the log.
    if (now - this.lastErrorLog > 1000) {
      this.lastErrorLog = now;
      this.env.logger.error({ err, stage: stage || undefined, client }, message);
    }
  }

  private fail(ctx: QueryContext, err: unknown): void {
    this.errors.value++;
    this.logLimited(err, ctx.answeredBy, ctx.client.address, 'stage failed; answering SERVFAIL');
    // The SERVFAIL carries the client's question, not one a stage put in its place.
    ctx.restoreClientQuery();
    if (ctx.query === null) {
      ctx.response = null;
      ctx.dropReason = 'pipeline error before decode';
      return;
    }
    ctx.respondError('engine', Rcode.SERVFAIL);
  }

  async close(): Promise<void> {
    for (const s of this.stages) await s.close?.();
  }
}

function info(
  client: ClientInfo,
  transport: 'udp' | 'tcp',
  name: string,
  qtype: number,
  answeredBy: string,
  wire: Buffer,
  truncated: boolean,
  memo: boolean,
  receivedAt: number,
  now: number,
  context: QueryContext | null,
): ReplyInfo {
  const n = wire.length;
  const rcode = replyRcode(wire);
  return {
    time: Date.now(),
    client,
    transport,
    id: n >= 2 ? (wire[0]! << 8) | wire[1]! : 0,
    name,
    qtype,
    rcode,
    answers: n >= 8 ? (wire[6]! << 8) | wire[7]! : 0,
    answeredBy,
    truncated,
    memo,
    durationUs: Math.round((now - receivedAt) * 1000),
    size: n,
    context,
  };
}

/** A reply's RCODE with the extended bits of its OPT (16: BADVERS), read from the wire as sent. */
export function replyRcode(wire: Buffer): number {
  let rcode = wire.length >= 4 ? wire[3]! & 0x0f : 0;
  // linedns puts its OPT last, without options (11 octets: root, type 41, ...): its extended
  // RCODE bits (the first TTL octet) sit 6 octets from the end. A reply without one there keeps the header's 4 bits.
  const n = wire.length;
  const opt = n >= 23 && wire[11]! > 0 && wire[n - 11] === 0 && wire[n - 10] === 0 && wire[n - 9] === 41 && wire[n - 2] === 0 && wire[n - 1] === 0;
  if (opt) rcode |= wire[n - 6]! << 4;
  return rcode;
}

/**
 * The id of the client's LineSet for the reply counts (QueryStats), classified now if no stage
 * asked; 0 when it has none. Outside the pipeline's error handling, so a user classifier that
 * throws costs the count its line, not the process.
 */
export function lineSetId(ctx: QueryContext): number {
  try {
    return ctx.lines?.id ?? 0;
  } catch {
    return 0;
  }
}
