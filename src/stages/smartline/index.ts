// smartline stage: the label filter. Its classifier (prefix trie, longest prefix first; the EDNS
// Client Subnet address for `trustEcsFrom` clients) is registered when the stage is built, so the
// view is computed lazily on first use by whichever stage asks first (the cache, records, here).
// After records, it answers the labelled local data the client's lines may see, or falls through.

import { AddressMatcher } from '../../lib/net/matcher.js';
import { LineTable } from './lines.js';
import type { LineClassifier } from '../../core/context.js';
import type { Stage, StageFactory } from '../../core/stage.js';
import type { RuntimeConfig } from '../../config/types.js';

function build(config: RuntimeConfig): LineClassifier {
  const table = new LineTable(config.smartLine);
  const trusted = new AddressMatcher(config.trustEcsFrom);
  if (trusted.empty) return (ctx) => table.classify(ctx.client.address);
  return (ctx) => {
    const ecs = ctx.query?.edns?.ecs;
    if (ecs && trusted.matches(ctx.client.address)) {
      ctx.note(`smartline: client subnet from trusted ${ctx.client.address}`);
      return table.classifyBytes(ecs.address);
    }
    return table.classify(ctx.client.address);
  };
}

export const createSmartLineStage: StageFactory = (_options, env): Stage => {
  env.views.setDefault(build(env.config));
  return {
    name: 'smartline',
    handle(ctx, next) {
      // Local data the records stage before us left unanswered because it depends on the view.
      const c = ctx.candidates;
      if (c !== null && c.byView && ctx.response === null && c.answer(ctx, 'smartline', ctx.lines)) return;
      return next();
    },
    reload(config) {
      env.views.setDefault(build(config));
    },
  };
};
