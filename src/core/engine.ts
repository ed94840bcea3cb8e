// Runs the composed pipeline for one query and contains its failures: a stage that throws gets
// the client a SERVFAIL (or nothing, for an undecodable packet), is logged and counted, never a crash.

import { Rcode } from '../lib/dns/constants.js';
import { compose, type Handler } from './compose.js';
import type { QueryContext } from './context.js';
import type { Stage, StageEnv } from './stage.js';
import type { Counter } from '../lib/metrics.js';
import type { RuntimeConfig } from '../config/types.js';
import { AnswerMemo } from './answer-memo.js';

export class Engine {
  private readonly handler: Handler;
  private readonly errors: Counter;
  private lastErrorLog = 0;
  /**
   * Repeats of a query within a second, from the same client, answered without the pipeline;
   * null when turned off (`answerMemo: false`) or when it would change what a client gets: a
   * user stage (its behaviour is unknown) or a rate limit (it counts every query).
   */
  memo: AnswerMemo | null = null;

  /**
   * `stagesKnown`: every stage is a built-in one. The caller says so because it knows the
   * registry; the core imports no stage.
   */
  constructor(readonly stages: readonly Stage[], private readonly env: StageEnv, private readonly stagesKnown: boolean) {
    this.handler = compose(stages);
    this.errors = env.metrics.counter('pipeline_errors_total', 'queries whose pipeline threw; answered SERVFAIL');
    this.configured(env.config);
  }

  /** After the stages took a new configuration: answers kept from the old one are dropped. */
  configured(config: RuntimeConfig): void {
    const eligible = config.answerMemo && config.rateLimit === null && this.stagesKnown;
    this.memo = eligible ? new AnswerMemo() : null;
  }

  run(ctx: QueryContext): void | Promise<void> {
    // The view is classified lazily (ctx.lines), by the classifier a stage registered when built.
    ctx.classifier = this.env.views.classifier;
    try {
      const r = this.handler(ctx);
      if (r) return r.catch((err: unknown) => this.fail(ctx, err));
    } catch (err) {
      this.fail(ctx, err);
    }
  }

  private fail(ctx: QueryContext, err: unknown): void {
    this.errors.value++;
    const now = Date.now();
    // At most one log line a second, so a poison query cannot flood the log.
    if (now - this.lastErrorLog > 1000) {
      this.lastErrorLog = now;
      this.env.logger.error({ err, stage: ctx.answeredBy || undefined, client: ctx.client.address }, 'stage failed; answering SERVFAIL');
    }
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
