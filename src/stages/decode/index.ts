// decode stage: parse header, question and OPT; answer FORMERR/NOTIMP/BADVERS, refuse transfers and
// classes other than IN/CH/ANY, or drop bad input. Every rejection is counted by reason class.

import { QClass, QType, Rcode } from '../../lib/dns/constants.js';
import { isRejection, parseQuery } from '../../lib/dns/query.js';
import { errorReply } from '../../lib/dns/template.js';
import { withEcsOption } from '../../lib/dns/ecs.js';
import type { QueryContext } from '../../core/context.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';

/**
 * The reply to a query that carried a Client Subnet option carries one back (RFC 7871 7.2.1):
 * the client's family, source prefix and address, and as scope the bits of that address the
 * answer depended on: an upstream's scope (forward, a cache hit), and when the answer varied by
 * view, the bits that chose the client's lines. Registered only for such queries, and as the
 * outermost hook, so it sees the reply as it leaves (the client's question back in place).
 */
function answerClientSubnet(ctx: QueryContext, wire: Buffer): Buffer {
  const ecs = ctx.query?.edns?.ecs;
  if (!ecs) return wire;
  let scope = ctx.ecsScope;
  if (ctx.ecsClassified && ctx.get('variesByView') === true && ctx.ecsViewScope > scope) scope = ctx.ecsViewScope;
  return withEcsOption(wire, ecs, scope);
}

function createDecodeStage(_options: unknown, env: StageEnv): Stage {
  const m = env.metrics;
  const dropped = m.counter('decode_dropped_total', 'packets dropped: unreadable header or QR set');
  const formerr = m.counter('decode_formerr_total', 'queries answered FORMERR');
  const notimp = m.counter('decode_notimp_total', 'queries answered NOTIMP');
  const badvers = m.counter('decode_badvers_total', 'queries answered BADVERS');
  const refusedXfr = m.counter('decode_refused_transfer_total', 'zone transfer requests refused');
  const refusedClass = m.counter('decode_refused_class_total', 'queries refused for a class other than IN, CH or ANY');
  return {
    name: 'decode',
    handle(ctx, next) {
      const p = parseQuery(ctx.raw);
      if (isRejection(p)) {
        if (p.action === 'drop') {
          dropped.value++;
          ctx.dropReason = p.reason;
          return;
        }
        if (p.rcode === Rcode.NOTIMP) notimp.value++;
        else if (p.rcode === Rcode.BADVERS) badvers.value++;
        else formerr.value++;
        ctx.note(`decode: ${p.reason}`);
        ctx.respond('decode', errorReply(ctx.raw, p.id, p.flags, p.rcode, p.questionEnd, p.edns ? { dnssecOk: false } : null));
        return;
      }
      ctx.query = p;
      if (p.edns?.ecs) ctx.onReply(answerClientSubnet);
      if (p.qtype === QType.AXFR || p.qtype === QType.IXFR) {
        refusedXfr.value++;
        ctx.respondError('decode', Rcode.REFUSED);
        return;
      }
      // No upstream serves other classes (HS, NONE, private ones): asking would only end in
      // SERVFAIL after the forward deadline, so refuse at once. CH stays for version.bind & co.
      if (p.qclass !== QClass.IN && p.qclass !== QClass.CH && p.qclass !== QClass.ANY) {
        refusedClass.value++;
        ctx.note(`decode: class ${p.qclass} refused`);
        ctx.respondError('decode', Rcode.REFUSED);
        return;
      }
      return next();
    },
  };
}

export const decodeStage: StageDefinition = {
  name: 'decode',
  summary: 'parses the query strictly; FORMERR, NOTIMP, BADVERS, REFUSED for transfers and odd classes, or a drop',
  provides: ['query'],
  memoSafe: true,
  create: createDecodeStage,
};
