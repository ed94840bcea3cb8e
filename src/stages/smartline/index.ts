// smartline stage: classifies the client into smart-line lines (prefix trie, computed lazily),
// using the EDNS Client Subnet address instead when the query comes from `trustEcsFrom`.

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
  let classifier = build(env.config);
  return {
    name: 'smartline',
    handle(ctx, next) {
      ctx.classifier = classifier;
      return next();
    },
    reload(config) {
      classifier = build(config);
    },
  };
};
