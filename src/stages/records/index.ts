// records stage: finds the local records of the question's name and type (labels and all) and
// hands them on in the `candidates` slot. Answers that depend on no client's view are given here;
// labelled ones are the label filter's (smartline, after records). Encoded once per (name, type,
// view), then only stamped per query.

import { LRUCache } from 'lru-cache';
import { QClass } from '../../lib/dns/constants.js';
import { renderTemplate, type WireTemplate } from '../../lib/dns/template.js';
import type { ParsedQuery } from '../../lib/dns/query.js';
import { encodeLocal } from './encode.js';
import { RecordStore, type Visibility } from './store.js';
import { NO_LINES, type LineSet } from '../../core/views.js';
import type { QueryContext } from '../../core/context.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';

/**
 * The local records of the question's name and type, labels and all. Encoding stays here: the
 * label filter (smartline) asks for the answer of the client's view, which is encoded once per
 * view and memoised.
 */
export interface LocalCandidates {
  /** Whether some record involved carries labels, so that what a client gets depends on its view. */
  readonly byView: boolean;
  /**
   * Answers `ctx` (as `stage`) with what `view` may see, leaving it in the `cacheable` slot;
   * false, with nothing answered, when nothing is visible to that view. `view` null: every
   * record visible (used when `byView` is false).
   */
  answer(ctx: QueryContext, stage: string, view: LineSet | null): boolean;
}

declare module '../../core/context.js' {
  interface Slots {
    candidates: LocalCandidates;
  }
}

/** Memo value for "local data has nothing for this view here": go on. */
const FALL_THROUGH: unique symbol = Symbol('fall through');
type Encoded = WireTemplate | typeof FALL_THROUGH;
/** Names whose candidates are kept; each holds its few types. */
const MEMO_SIZE = 50_000;
/** Types memoised per name at most. */
const MAX_VARIANTS = 64;
/** View key of "no classification" (view null) in a Candidates' memo. */
const NO_VIEW = -1;

function createRecordsStage(_options: unknown, env: StageEnv): Stage {
  let store = new RecordStore(env.config.records);
  let unmatched = env.config.smartLineUnmatched;
  // With the label filter after us it answers labelled data; without, the view is known to
  // every stage (a classifier is required in the pipeline) and records filters by it itself.
  const deferLabelled = env.position.providedAfter('label-filter');
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
      if (ctx.tracing) for (const line of this.source.explain(this.name, this.qtype, { lines: view, unmatched })) ctx.note(`${stage}: candidate ${line}`);
      const t = this.encoded(ctx, q, view);
      if (t === FALL_THROUGH) {
        hidden.value++;
        if (ctx.tracing) ctx.note(view === null ? `${stage}: nothing local for this name and type; falling through` : `${stage}: no local record visible to lines [${view.lines.join(', ')}]; falling through`);
        return false;
      }
      answered.value++;
      ctx.reusable = answered;
      if (ctx.tracing) ctx.note(`${stage}: answered from local data for lines [${(view ?? NO_LINES).lines.join(', ')}]`);
      const response = renderTemplate(t, ctx.raw, q, 0);
      ctx.respond(stage, response);
      ctx.set('cacheable', { local: true, template: t, response });
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
      ctx.set('candidates', c);
      if (c.byView) ctx.set('variesByView', true);
      if (c.byView && deferLabelled) {
        if (ctx.tracing) ctx.note('records: labelled local data; the label filter after records answers it');
        return next();
      }
      if (c.answer(ctx, 'records', c.byView ? ctx.lines : null)) return;
      return next();
    },
    reload(config) {
      store = new RecordStore(config.records);
      unmatched = config.smartLineUnmatched;
      memo = new LRUCache({ max: MEMO_SIZE });
    },
  };
}

export const recordsStage: StageDefinition = {
  name: 'records',
  summary: "answers from records.json; hands labelled records on to the label filter after it",
  requires: [
    { name: 'query', where: 'before', reason: 'it looks up the decoded question' },
    {
      // The label filter after records (smartline) or a classifier before it: without either,
      // no stage knows the client's lines and every client would see every labelled record.
      name: 'view',
      where: 'anywhere',
      reason: (facts) =>
        `records.json labels ${JSON.stringify(facts.labelledRecord?.name)} with ${(facts.labelledRecord?.labels ?? []).map((l) => JSON.stringify(l)).join(', ')}, and only a stage that knows the client's lines can show such records to those lines alone; without one every client would see every labelled record`,
      when: (_o, facts) => facts.labelledRecord !== null,
    },
  ],
  provides: ['candidates', 'cacheable', 'variesByView'],
  memoSafe: true,
  dataKeys: ['records', 'smartLineUnmatched'],
  create: createRecordsStage,
};
