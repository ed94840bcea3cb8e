// records stage: finds the local records of the question's name and type (labels and all) and
// hands them on in the `candidates` slot. Answers that depend on no client's view are given here;
// labelled ones are the label filter's (smartline, after records). Encoded once per (name, type,
// view), then only stamped per query; a local CNAME whose target is not local is chased through
// the stages after the answering one (ctx.subquery) and joined to their answer.

import { growingLru } from '../../lib/lru.js';
import { QClass, Rcode } from '../../lib/dns/constants.js';
import { renderTemplate, type WireTemplate } from '../../lib/dns/template.js';
import { joinChain, withQuestionName } from '../../lib/dns/chain.js';
import { keyToWire } from '../../lib/dns/name.js';
import type { ParsedQuery } from '../../lib/dns/query.js';
import { encodeLocal } from './encode.js';
import { RecordStore, type LocalResult, type Visibility } from './store.js';
import { NO_LINES, type LineSet } from '../../core/views.js';
import type { QueryContext, SubAnswer } from '../../core/context.js';
import type { Next, Stage, StageDefinition, StageEnv } from '../../core/stage.js';

/**
 * What LocalCandidates.answer did: false, nothing visible (the caller goes on with next());
 * true, answered; a promise, answering by way of the stages after the caller (a local CNAME
 * chased to a target that is not local), settled once `ctx.response` holds the joined answer.
 */
export type Answered = boolean | Promise<void>;

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
   * record visible (used when `byView` is false). `next` is the caller's: a CNAME chain whose
   * target has no local data for this view is chased through it (see Answered); without it
   * (a user stage written before chasing existed) the chain alone is the answer.
   */
  answer(ctx: QueryContext, stage: string, view: LineSet | null, next?: Next): Answered;
}

declare module '../../core/context.js' {
  interface Slots {
    candidates: LocalCandidates;
  }
}

/** Memo value for "local data has nothing for this view here": go on. */
const FALL_THROUGH: unique symbol = Symbol('fall through');

/** Memo value for a local CNAME chain whose last target is not local data: chase it. */
class Chase {
  /** `head`: the chain's records alone (AA set), which is also the answer when nothing follows. */
  constructor(readonly head: WireTemplate, readonly target: string, readonly targetWire: Buffer) {}
}

/** Memo value for a local chain that loops or runs too long: SERVFAIL. */
class Broken {
  constructor(readonly reason: string) {}
}

type Encoded = WireTemplate | typeof FALL_THROUGH | Chase | Broken;

function encode(raw: Buffer, questionEnd: number, name: string, result: LocalResult): Encoded {
  switch (result.kind) {
    case 'none':
      return FALL_THROUGH;
    case 'broken':
      return new Broken(result.reason);
    case 'chase': {
      const head = encodeLocal(raw, questionEnd, name, { kind: 'answer', rcode: Rcode.NOERROR, answers: result.answers, authority: [] });
      return new Chase(head, result.target, keyToWire(result.target));
    }
    default:
      return encodeLocal(raw, questionEnd, name, result);
  }
}
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
  let memo = growingLru<string, Map<number, Candidates>>(MEMO_SIZE);
  const answered = env.metrics.counter('records_answered_total', 'queries answered from local data');
  const hidden = env.metrics.counter('records_fallthrough_total', 'queries with local data none of which this client sees');
  const chased = env.metrics.counter('records_chased_total', 'local CNAME chains joined to the answer the stages after records gave for their target');
  const chainErrors = env.metrics.counter('records_chain_errors_total', 'local CNAME chains answered with an error: a loop, too long, or no usable answer for their target');

  /** Renders a local template for `ctx` and leaves it for the cache and the answer memo. */
  function answerLocal(ctx: QueryContext, stage: string, q: ParsedQuery, t: WireTemplate): void {
    answered.value++;
    ctx.reusable = answered;
    const response = renderTemplate(t, ctx.raw, q, 0);
    ctx.respond(stage, response);
    ctx.set('cacheable', { local: true, template: t, response });
  }

  /**
   * The chain's target asked of the stages after `stage` (`next`), with the client's header and
   * EDNS, and their answer joined behind the chain (joinChain: their records and rcode, the
   * chain's minimum TTL). Nothing answered after us (a pipeline without forward): the chain
   * alone, as before chasing existed.
   */
  function chase(ctx: QueryContext, stage: string, q: ParsedQuery, c: Chase, next: Next): Answered {
    if (ctx.tracing) ctx.note(`${stage}: local CNAME chain ends at ${c.target}, which is not local data here; chasing it`);
    const sub = ctx.subquery(stage, withQuestionName(ctx.raw, q.questionEnd, c.targetWire), next);
    if (sub instanceof Promise) return sub.then((s) => join(ctx, stage, q, c, s));
    join(ctx, stage, q, c, sub);
    return true;
  }

  function join(ctx: QueryContext, stage: string, q: ParsedQuery, c: Chase, sub: SubAnswer): void {
    // The target's answer depended on the view (labelled data there, shown or hidden): so does ours.
    if (sub.slots.variesByView === true) ctx.set('variesByView', true);
    // The upstream that answered the target, for the query log: the one behind our answer.
    const upstream = sub.slots.upstream;
    if (upstream !== undefined) ctx.set('upstream', upstream);
    if (sub.response === null) {
      if (ctx.tracing) ctx.note(`${stage}: no stage after it answered ${c.target}; the local chain alone`);
      answerLocal(ctx, stage, q, c.head);
      return;
    }
    const j = joinChain(c.head, sub.response, q.name);
    if (!j.ok) {
      chainErrors.value++;
      if (ctx.tracing) ctx.note(`${stage}: chasing ${c.target}: ${j.reason}; rcode ${j.rcode}`);
      ctx.respondError(stage, j.rcode);
      return;
    }
    chased.value++;
    if (ctx.tracing) ctx.note(`${stage}: joined the local chain to the answer ${sub.answeredBy} gave for ${c.target}`);
    const response = renderTemplate(j.template, ctx.raw, q, 0);
    ctx.respond(stage, response);
    // Kept as an upstream answer would be: aged, for the chain's minimum TTL (see joinChain),
    // and for the target's Client Subnet scope only when the upstream gave one (RFC 7871).
    const target = sub.slots.cacheable;
    ctx.set('cacheable', { local: false, template: j.template, response, subnet: target !== undefined && !target.local ? (target.subnet ?? null) : null });
    // Repeatable within the second only when the target's answer was (a cache hit or local
    // data after us): an answer forward fetched may differ on the next ask.
    if (sub.reusable) ctx.reusable = chased;
  }

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
      if (!this.byView) this.shared = encode(ctx.raw, q.questionEnd, name, result);
    }

    private encoded(ctx: QueryContext, q: ParsedQuery, view: LineSet | null): Encoded {
      if (this.shared !== null) return this.shared;
      const key = view === null ? NO_VIEW : view.id;
      let t = this.views.get(key);
      if (t === undefined) {
        const result = this.source.lookup(this.name, this.qtype, { lines: view, unmatched });
        t = encode(ctx.raw, q.questionEnd, this.name, result);
        this.views.set(key, t);
      }
      return t;
    }

    answer(ctx: QueryContext, stage: string, view: LineSet | null, next?: Next): Answered {
      const q = ctx.query!;
      if (ctx.tracing) for (const line of this.source.explain(this.name, this.qtype, { lines: view, unmatched })) ctx.note(`${stage}: candidate ${line}`);
      const t = this.encoded(ctx, q, view);
      if (t === FALL_THROUGH) {
        hidden.value++;
        if (ctx.tracing) ctx.note(view === null ? `${stage}: nothing local for this name and type; falling through` : `${stage}: no local record visible to lines [${view.lines.join(', ')}]; falling through`);
        return false;
      }
      if (t instanceof Chase) {
        if (next !== undefined) return chase(ctx, stage, q, t, next);
        answerLocal(ctx, stage, q, t.head);
        return true;
      }
      if (t instanceof Broken) {
        chainErrors.value++;
        if (ctx.tracing) ctx.note(`${stage}: local ${t.reason}; SERVFAIL`);
        ctx.respondError(stage, Rcode.SERVFAIL);
        return true;
      }
      if (ctx.tracing) ctx.note(`${stage}: answered from local data for lines [${(view ?? NO_LINES).lines.join(', ')}]`);
      answerLocal(ctx, stage, q, t);
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
      const r = c.answer(ctx, 'records', c.byView ? ctx.lines : null, next);
      if (r === false) return next();
      if (r !== true) return r;
    },
    reload(config) {
      store = new RecordStore(config.records);
      unmatched = config.smartLineUnmatched;
      memo = growingLru(MEMO_SIZE);
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
