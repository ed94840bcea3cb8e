// rewrite stage: resolves name X with name Y's data (a spoofing proxy for test environments: a
// production name answered by a test instance); the stages after it see Y, the client sees only X.

import { Flag, QClass, Rcode } from '../../lib/dns/constants.js';
import { keyToWire, parentName } from '../../lib/dns/name.js';
import { scanMessage } from '../../lib/dns/message.js';
import { renderTemplate, templateFromScan } from '../../lib/dns/template.js';
import type { QueryContext } from '../../core/context.js';
import type { RewriteRule, RuntimeConfig } from '../../config/types.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { reversalOf, revertReply, type Reversal } from './revert.js';

/** What the rewrite stage did to this query, for the query log: the client's name and the one asked. */
export interface RewriteNote {
  readonly from: string;
  readonly to: string;
}

declare module '../../core/context.js' {
  interface Slots {
    rewrite: RewriteNote;
  }
}

interface Rule extends RewriteRule {
  readonly reversal: Reversal;
  /** The wire of `to` for an exact rule (the same for every query), null for a suffix rule. */
  readonly toWire: Buffer | null;
}

/** The rules by `from`: exact ones first, then subtrees from the longest. */
class RuleTable {
  readonly exact = new Map<string, Rule>();
  readonly suffix = new Map<string, Rule>();
  readonly size: number;

  constructor(rules: readonly RewriteRule[]) {
    for (const r of rules) {
      const rule: Rule = { ...r, reversal: reversalOf(r), toWire: r.suffix ? null : keyToWire(r.to) };
      (r.suffix ? this.suffix : this.exact).set(r.from, rule);
    }
    this.size = rules.length;
  }
}

interface Match {
  rule: Rule | null;
  /** The name to ask (Y). */
  to: string;
  /** Some rule with labels was weighed for this name, applied or not: the answer is per view. */
  viewed: boolean;
}

/** Whether a rule applies to this client: no labels, or one of the client's lines among them. */
function applies(rule: Rule, ctx: QueryContext): boolean {
  if (rule.labels === null) return true;
  const lines = ctx.lines?.lines;
  return lines !== undefined && rule.labels.some((l) => lines.includes(l));
}

/**
 * The rule for `name`: its exact rule, else the subtree rule of its nearest ancestor (or itself);
 * a labelled rule that does not apply to this client gives way to the next one.
 */
function match(table: RuleTable, name: string, ctx: QueryContext, m: Match): void {
  m.rule = null;
  m.viewed = false;
  const exact = table.exact.get(name);
  if (exact !== undefined) {
    if (exact.labels !== null) m.viewed = true;
    if (applies(exact, ctx)) {
      m.rule = exact;
      m.to = exact.to;
      return;
    }
  }
  if (table.suffix.size === 0) return;
  // From the name up (parentName steps over a dot escaped inside a label); no rule for the root.
  for (let at: string | null = name; at !== null && at !== '.'; at = parentName(at)) {
    const rule = table.suffix.get(at);
    if (rule === undefined) continue;
    if (rule.labels !== null) m.viewed = true;
    if (applies(rule, ctx)) {
      m.rule = rule;
      m.to = at === name ? rule.to : `${name.slice(0, name.length - at.length - 1)}.${rule.to}`;
      return;
    }
  }
}

function createRewriteStage(_options: unknown, env: StageEnv): Stage {
  let table = new RuleTable(env.config.rewrite);
  const rewritten = env.metrics.counter('rewrite_queries_total', 'questions asked as another name (memo repeats not counted)');
  const failed = env.metrics.counter('rewrite_failures_total', 'rewritten replies that could not be turned back (answered SERVFAIL)');
  // One per stage: match() fills it, handle() reads it before anything else can run.
  const m: Match = { rule: null, to: '', viewed: false };

  function fail(ctx: QueryContext, why: string): void {
    failed.value++;
    if (ctx.tracing) ctx.note(`rewrite: ${why}; SERVFAIL`);
    // Not for the memo, nor (the response changed) for a cache before this stage.
    ctx.reusable = null;
    ctx.respondError('rewrite', Rcode.SERVFAIL);
  }

  /**
   * After the stages behind this one answered Y: the context describes X again, and the reply
   * is X's. When the answer is one a cache before this stage may keep (the `cacheable` slot
   * names it), the template itself is turned back and the slot replaced, so that cache keys X's
   * reply by X's question; a cache hit after this stage is turned back as sent.
   */
  function finish(ctx: QueryContext, restore: () => void, x: string, reversal: Reversal): void {
    restore();
    const response = ctx.response;
    if (response === null) return; // dropped on purpose; or the engine answers `unanswered` for X
    const q = ctx.query!;
    const answer = ctx.get('cacheable');
    if (answer !== undefined && answer.response === response) {
      const t = revertReply(answer.template.buf, ctx.raw, q.questionEnd, x, reversal);
      if (typeof t === 'string') return fail(ctx, t);
      const scan = scanMessage(t);
      if (typeof scan === 'string') return fail(ctx, `reverted template ${scan}`);
      const template = templateFromScan(t, scan, (t[2]! & (Flag.AA >> 8)) !== 0);
      const reply = renderTemplate(template, ctx.raw, q, 0);
      ctx.response = reply;
      // Y's Client Subnet scope (RFC 7871) is X's: the answer is the same data.
      ctx.set('cacheable', answer.local ? { local: true, template, response: reply } : { local: false, template, response: reply, subnet: answer.subnet ?? null });
      return;
    }
    const out = revertReply(response, ctx.raw, q.questionEnd, x, reversal);
    if (typeof out === 'string') return fail(ctx, out);
    ctx.response = out;
  }

  return {
    name: 'rewrite',
    handle(ctx, next) {
      const q = ctx.query!;
      if (table.size === 0 || q.qclass !== QClass.IN) return next();
      match(table, q.name, ctx, m);
      if (m.viewed) ctx.set('variesByView', true);
      const rule = m.rule;
      if (rule === null) return next();
      const x = q.name;
      const y = m.to;
      rewritten.value++;
      ctx.set('rewrite', { from: x, to: y });
      if (ctx.tracing) ctx.note(`rewrite: ${x} asked as ${y}`);
      let wire = rule.toWire;
      if (wire === null) {
        try {
          wire = keyToWire(y);
        } catch {
          // A subtree rule onto a longer suffix: this name has no counterpart of 255 octets.
          return fail(ctx, `${JSON.stringify(x)} rewritten is over 255 octets`);
        }
      }
      // Header and everything after QNAME (type, class, OPT) as the client sent them.
      const raw = ctx.raw;
      const restore = ctx.replaceQuery('rewrite', Buffer.concat([raw.subarray(0, 12), wire, raw.subarray(q.questionEnd - 4)]));
      const reversal = rule.reversal;
      // A stage that throws: the engine answers SERVFAIL with the client's question.
      const r = next();
      if (r) return r.then(() => finish(ctx, restore, x, reversal));
      finish(ctx, restore, x, reversal);
    },
    reload(config: RuntimeConfig) {
      table = new RuleTable(config.rewrite);
    },
  };
}

export const rewriteStage: StageDefinition = {
  name: 'rewrite',
  summary: 'resolves names as others (rewrite, rewriteFrom) and gives the client its own names back in every section',
  requires: [
    { name: 'query', where: 'before', reason: 'it rewrites the decoded question' },
    {
      name: 'view',
      where: 'anywhere',
      reason: (facts) =>
        `the rewrite rule for ${JSON.stringify(facts.labelledRewrite?.from)} applies to ${(facts.labelledRewrite?.labels ?? []).map((l) => JSON.stringify(l)).join(', ')} only, and only a stage that knows the client's lines can tell who is in them`,
      when: (_o, facts) => facts.labelledRewrite != null,
    },
  ],
  provides: ['rewrite', 'variesByView'],
  // Its decision depends on the name (the query's octets), the rules (a reload drops the memo)
  // and the view (the client's address, or an ECS option, also in the octets); the reply is
  // turned back the same way every time.
  memoSafe: true,
  dataKeys: ['rewrite', 'rewriteFrom'],
  create: createRewriteStage,
};
