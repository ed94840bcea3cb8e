// smartline stage: the label filter. Its classifier (prefix trie, longest prefix first; the EDNS
// Client Subnet address for `trustEcsFrom` clients) is registered when the stage is built, so the
// view is computed lazily on first use by whichever stage asks first (the cache, here).
// After records, it answers the labelled local data the client's lines may see, or falls through.

import { AddressMatcher } from '../../lib/net/matcher.js';
import { formatIp, parseIp } from '../../lib/net/address.js';
import { LineTable } from './lines.js';
import type { LineClassifier, QueryContext } from '../../core/context.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import type { RuntimeConfig } from '../../config/types.js';
import { smartLineOptions, type SmartLineOptions } from './options.js';

function build(config: RuntimeConfig, options: SmartLineOptions): LineClassifier {
  const table = new LineTable(config.smartLine);
  const trusted = new AddressMatcher(options.trustEcsFrom);
  /** For explain: which CIDRs of which lines matched. */
  const explain = (ctx: QueryContext, bytes: Uint8Array | null, what: string): void => {
    const m = bytes === null ? [] : table.matches(bytes);
    ctx.note(`smartline: ${what} ${m.length === 0 ? 'is in no line' : `matches ${m.map((x) => `${x.cidr} (${x.line})`).join(', ')}`}`);
  };
  return (ctx) => {
    const ecs = ctx.query?.edns?.ecs;
    if (ecs && !trusted.empty && trusted.matches(ctx.client.address)) {
      if (ctx.tracing) explain(ctx, ecs.address, `client subnet ${formatIp(ecs.address)}/${ecs.sourcePrefix} from trusted ${ctx.client.address}`);
      // The ECS then speaks for the client (upstream, in the cache), and a reply chosen by its
      // lines says how many bits of it chose them (RFC 7871 scope).
      ctx.ecsClassified = true;
      ctx.ecsViewScope = table.decidingBits(ecs.address);
      return table.classifyBytes(ecs.address);
    }
    if (ctx.tracing) {
      if (ecs) ctx.note(`smartline: client subnet ignored: ${ctx.client.address} is not in trustEcsFrom`);
      explain(ctx, parseIp(ctx.client.address), ctx.client.address);
    }
    return table.classify(ctx.client.address);
  };
}

function createSmartLineStage(options: SmartLineOptions, env: StageEnv): Stage<SmartLineOptions> {
  env.views.setDefault(build(env.config, options));
  return {
    name: 'smartline',
    handle(ctx, next) {
      // Local data the records stage before us left unanswered because it depends on the view.
      // A chain it answers whose target is not local is chased through our `next`.
      const c = ctx.get('candidates');
      if (c !== undefined && c.byView && ctx.response === null) {
        const r = c.answer(ctx, 'smartline', ctx.lines, next);
        if (r !== false) return r === true ? undefined : r;
      }
      return next();
    },
    reload(config, o) {
      env.views.setDefault(build(config, o));
    },
  };
}

export const smartLineStage: StageDefinition<SmartLineOptions> = {
  name: 'smartline',
  summary: "the label filter: classifies the client into its lines and answers the labelled local data they may see, or falls through",
  options: smartLineOptions,
  requires: [{ name: 'query', where: 'before', reason: 'it reads the decoded query (and its client subnet)' }],
  // 'view': the classifier, registered when built, so stages on either side can ask for the view.
  provides: ['view', 'label-filter'],
  memoSafe: true,
  dataKeys: ['smartLine'],
  create: createSmartLineStage,
};
