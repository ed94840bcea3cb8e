// records stage: answers from records.json as the client's smart-line view allows, else next().
// Answers are encoded once per (name, type, line set) and then only stamped per query.

import { LRUCache } from 'lru-cache';
import { QClass } from '../../lib/dns/constants.js';
import { renderTemplate, type WireTemplate } from '../../lib/dns/template.js';
import { encodeLocal } from './encode.js';
import { RecordStore, type Visibility } from './store.js';
import { NO_LINES } from '../../core/views.js';
import type { RuntimeConfig } from '../../config/types.js';
import type { Stage, StageFactory } from '../../core/stage.js';

/** Memo value for "local data has nothing for this client here": go upstream. */
const FALL_THROUGH: unique symbol = Symbol('fall through');
/** Names whose answers are kept encoded; each holds its few (type, line set) variants. */
const MEMO_SIZE = 50_000;
/** Variants (type x line set) memoised per name at most. */
const MAX_VARIANTS = 64;

export const createRecordsStage: StageFactory = (_options, env): Stage => {
  let store = new RecordStore(env.config.records);
  let unmatched = env.config.smartLineUnmatched;
  type Memo = Map<number, WireTemplate | typeof FALL_THROUGH>;
  let memo = new LRUCache<string, Memo>({ max: MEMO_SIZE });
  const answered = env.metrics.counter('records_answered_total', 'queries answered from local data');
  const hidden = env.metrics.counter('records_fallthrough_total', 'queries with local data none of which this client sees');

  return {
    name: 'records',
    handle(ctx, next) {
      const q = ctx.query!;
      if (q.qclass !== QClass.IN || !store.mayAnswer(q.name)) return next();
      const lines = ctx.lines;
      // Keyed by the name (hashed once per query, shared with the store's lookup), then by
      // type and line set: no per-query key string to build and hash.
      let byName = memo.get(q.name);
      if (byName === undefined) {
        byName = new Map();
        memo.set(q.name, byName);
      }
      const code = q.qtype + (lines === null ? 0 : (lines.id + 1) * 0x10000);
      let t = byName.get(code);
      if (t === undefined) {
        const vis: Visibility = { lines, unmatched };
        const result = store.lookup(q.name, q.qtype, vis);
        t = result.kind === 'none' ? FALL_THROUGH : encodeLocal(ctx.raw, q.questionEnd, q.name, result);
        // Bounded per name too: a client cycling through 65536 qtypes must not grow it.
        if (byName.size >= MAX_VARIANTS) byName.clear();
        byName.set(code, t);
      }
      if (t === FALL_THROUGH) {
        hidden.value++;
        if (ctx.tracing) ctx.note(`records: nothing visible to lines [${(lines ?? NO_LINES).lines.join(', ')}]; falling through`);
        return next();
      }
      answered.value++;
      ctx.reusable = answered;
      if (ctx.tracing) ctx.note(`records: answered for lines [${(lines ?? NO_LINES).lines.join(', ')}]`);
      ctx.respond('records', renderTemplate(t, ctx.raw, q, 0));
    },
    reload(config: RuntimeConfig) {
      store = new RecordStore(config.records);
      unmatched = config.smartLineUnmatched;
      memo = new LRUCache({ max: MEMO_SIZE });
    },
  };
};
