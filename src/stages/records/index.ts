// records stage: finds the local records of the question's name and type (labels and all) and
// hands them on as `ctx.candidates`. Answers that do not depend on the client's view are given
// here; the label filter is the smartline stage's (see docs/stages.md for the order rule).
// Answers are encoded once per (name, type, view) and then only stamped per query.

import { LRUCache } from 'lru-cache';
import { QClass } from '../../lib/dns/constants.js';
import { renderTemplate, type WireTemplate } from '../../lib/dns/template.js';
import type { ParsedQuery } from '../../lib/dns/query.js';
import { encodeLocal } from './encode.js';
import { RecordStore, type Visibility } from './store.js';
import { NO_LINES, type LineSet } from '../../core/views.js';
import type { LocalCandidates, QueryContext } from '../../core/context.js';
import type { RuntimeConfig } from '../../config/types.js';
import type { Stage, StageFactory } from '../../core/stage.js';

/** Memo value for "local data has nothing for this view here": go on. */
const FALL_THROUGH: unique symbol = Symbol('fall through');
type Encoded = WireTemplate | typeof FALL_THROUGH;
/** Names whose candidates are kept; each holds its few types. */
const MEMO_SIZE = 50_000;
/** Types memoised per name at most. */
const MAX_VARIANTS = 64;
/** View key of "no classification" (view null) in a Candidates' memo. */
const NO_VIEW = -1;

/**
 * Whether the records stage leaves labelled answers to a smartline stage after it. With smartline
 * before records (or none: the loader refuses labelled records then) records filters by the view
 * itself; with smartline after it, it must not answer them, or it would answer without the filter.
 */
function smartlineAfter(config: RuntimeConfig): boolean {
  const at = config.pipeline.indexOf('records');
  return at >= 0 && config.pipeline.indexOf('smartline', at + 1) > at;
}

export const createRecordsStage: StageFactory = (_options, env): Stage => {
  let store = new RecordStore(env.config.records);
  let unmatched = env.config.smartLineUnmatched;
  let deferLabelled = smartlineAfter(env.config);
  let memo = new LRUCache<string, Map<number, Candidates>>({ max: MEMO_SIZE });
  const answered = env.metrics.counter('records_answered_total', 'queries answered from local data');
  const hidden = env.metrics.counter('records_fallthrough_total', 'queries with local data none of which this client sees');

  /** One (name, type) of local data: built on the first question, memoised with the name. */
  class Candidates implements LocalCandidates {
    readonly byView: boolean;
    /** The answer when !byView; for byView, per view id. */
    private shared: Encoded | null = null;
    private readonly views = new Map<number, Encoded>();

    constructor(private readonly source: RecordStore, private readonly name: string, private readonly qtype: number, ctx: QueryContext, q: ParsedQuery) {
      const vis: Visibility = { lines: null, unmatched, labelled: false };
      const result = source.lookup(name, qtype, vis);
      this.byView = vis.labelled === true;
      if (!this.byView) this.shared = result.kind === 'none' ? FALL_THROUGH : encodeLocal(ctx.raw, q.questionEnd, name, result);
    }

    private encoded(ctx: QueryContext, q: ParsedQuery, view: LineSet | null): Encoded {
      if (this.shared !== null) return this.shared;
      const key = view === null ? NO_VIEW : view.id;
      let t = this.views.get(key);
      if (t === undefined) {
        const result = this.source.lookup(this.name, this.qtype, { lines: view, unmatched });
        t = result.kind === 'none' ? FALL_THROUGH : encodeLocal(ctx.raw, q.questionEnd, this.name, result);
        this.views.set(key, t);
      }
      return t;
    }

    answer(ctx: QueryContext, stage: string, view: LineSet | null): boolean {
      const q = ctx.query!;
      const t = this.encoded(ctx, q, view);
      if (t === FALL_THROUGH) {
        hidden.value++;
        if (ctx.tracing) ctx.note(`${stage}: no local record visible to lines [${(view ?? NO_LINES).lines.join(', ')}]; falling through`);
        return false;
      }
      answered.value++;
      ctx.reusable = answered;
      ctx.localAnswer = t;
      if (ctx.tracing) ctx.note(`${stage}: answered from local data for lines [${(view ?? NO_LINES).lines.join(', ')}]`);
      ctx.respond(stage, renderTemplate(t, ctx.raw, q, 0));
      return true;
    }
  }

  return {
    name: 'records',
    handle(ctx, next) {
      const q = ctx.query!;
      if (q.qclass !== QClass.IN || !store.mayAnswer(q.name)) return next();
      // Keyed by the name (hashed once per query, shared with the store's lookup), then by type:
      // no per-query key string to build and hash.
      let byName = memo.get(q.name);
      if (byName === undefined) {
        byName = new Map();
        memo.set(q.name, byName);
      }
      let c = byName.get(q.qtype);
      if (c === undefined) {
        c = new Candidates(store, q.name, q.qtype, ctx, q);
        // Bounded per name too: a client cycling through 65536 qtypes must not grow it.
        if (byName.size >= MAX_VARIANTS) byName.clear();
        byName.set(q.qtype, c);
      }
      ctx.candidates = c;
      if (c.byView && deferLabelled) {
        if (ctx.tracing) ctx.note('records: labelled local data; the smartline stage after records filters it');
        return next();
      }
      if (c.answer(ctx, 'records', c.byView ? ctx.lines : null)) return;
      return next();
    },
    reload(config: RuntimeConfig) {
      store = new RecordStore(config.records);
      unmatched = config.smartLineUnmatched;
      deferLabelled = smartlineAfter(config);
      memo = new LRUCache({ max: MEMO_SIZE });
    },
  };
};
