// zones stage: answers from RFC 1035 master files (the `zones` key) with AA, RFC 2308 negative
// answers, RFC 4592 wildcards and CNAMEs followed inside the zone; delegations and names outside
// every zone go on to the next stage. Labelled zones are views, chosen by the client's lines.

import { growingLru } from '../../lib/lru.js';
import { QClass, Rcode } from '../../lib/dns/constants.js';
import { renderTemplate, type WireTemplate } from '../../lib/dns/template.js';
import type { Counter } from '../../lib/metrics.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { encodeZoneAnswer } from './encode.js';
import { ZoneSet } from './store.js';

/** Memo value for "at or below a cut": go on to the next stage. */
const DELEGATED: unique symbol = Symbol('delegated');

/** An answer encoded once, with the counter it counts in. */
interface Encoded {
  readonly template: WireTemplate;
  readonly counter: Counter;
  readonly kind: string;
}

/** Names whose answers are kept; each holds its few (zone, type) pairs. */
const MEMO_SIZE = 50_000;
/** (zone, type) pairs memoised per name at most: a client cycling qtypes must not grow it. */
const MAX_VARIANTS = 64;

function createZonesStage(_options: unknown, env: StageEnv): Stage {
  let zones = new ZoneSet(env.config.zones);
  // Keyed by the name (the decode stage's string), then by zone index and type.
  let memo = growingLru<string, Map<number, Encoded | typeof DELEGATED>>(MEMO_SIZE);
  const answered = env.metrics.counter('zones_answered_total', 'queries answered with data from a zone');
  const nxdomain = env.metrics.counter('zones_nxdomain_total', 'queries answered NXDOMAIN from a zone');
  const nodata = env.metrics.counter('zones_nodata_total', 'queries answered NODATA from a zone (no record of the type)');
  const fallthrough = env.metrics.counter('zones_fallthrough_total', 'queries in a zone passed on: at or below a delegation, or the only zones there are hidden from the client');

  return {
    name: 'zones',
    handle(ctx, next) {
      const q = ctx.query!;
      if (q.qclass !== QClass.IN || zones.empty) return next();
      const choice = zones.find(q.name, ctx);
      if (choice.byView) ctx.set('variesByView', true);
      const zone = choice.zone;
      if (zone === null) {
        if (choice.byView) {
          fallthrough.value++;
          if (ctx.tracing) ctx.note('zones: the zones for this name are views this client is not in; falling through');
        }
        return next();
      }
      let byName = memo.get(q.name);
      if (byName === undefined) {
        byName = new Map();
        memo.set(q.name, byName);
      }
      const key = zone.index * 0x10000 + q.qtype;
      let e = byName.get(key);
      if (e === undefined) {
        const result = zone.lookup(q.name, q.qtype);
        if (result.kind === 'delegated') e = DELEGATED;
        else {
          const kind = result.rcode === Rcode.NXDOMAIN ? 'NXDOMAIN' : result.authority.length > 0 ? 'NODATA' : 'answer';
          const counter = kind === 'NXDOMAIN' ? nxdomain : kind === 'NODATA' ? nodata : answered;
          e = { template: encodeZoneAnswer(ctx.raw, q.questionEnd, q.name, result), counter, kind };
        }
        if (byName.size >= MAX_VARIANTS) byName.clear();
        byName.set(key, e);
      }
      if (e === DELEGATED) {
        fallthrough.value++;
        if (ctx.tracing) ctx.note(`zones: ${q.name} is at or below a delegation in ${zone.origin}; falling through`);
        return next();
      }
      e.counter.value++;
      // The answer depends on the octets and the view only: the memo may repeat it.
      ctx.reusable = e.counter;
      if (ctx.tracing) ctx.note(`zones: ${e.kind} from zone ${zone.origin}${zone.labels === null ? '' : ` (labels ${zone.labels.join(', ')})`}`);
      const response = renderTemplate(e.template, ctx.raw, q, 0);
      ctx.respond('zones', response);
      ctx.set('cacheable', { local: true, template: e.template, response });
    },
    reload(config) {
      // Built before anything is swapped: a zone that fails to build leaves the old set serving.
      const built = new ZoneSet(config.zones);
      zones = built;
      memo = growingLru(MEMO_SIZE);
    },
  };
}

export const zonesStage: StageDefinition = {
  name: 'zones',
  summary: 'answers from RFC 1035 zone files (views by labels); delegations and other names go on',
  requires: [
    { name: 'query', where: 'before', reason: 'it looks up the decoded question' },
    {
      // Without a classifier no client is in any line, so a labelled zone would answer nobody.
      name: 'view',
      where: 'anywhere',
      reason: (facts) =>
        `zone ${JSON.stringify(facts.labelledZone?.origin)} (${facts.labelledZone?.file ?? ''}) is labelled ${(facts.labelledZone?.labels ?? []).map((l) => JSON.stringify(l)).join(', ')}, and only a stage that knows the client's lines can show it to those lines alone; without one no client would ever see it`,
      when: (_o, facts) => facts.labelledZone !== null && facts.labelledZone !== undefined,
    },
  ],
  provides: ['cacheable', 'variesByView'],
  memoSafe: true,
  dataKeys: ['zones'],
  create: createZonesStage,
};
