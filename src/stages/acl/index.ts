// acl stage: REFUSED for clients whose address is outside `allow` (default: loopback only),
// so linedns never becomes an open resolver by accident.

import { Rcode } from '../../lib/dns/constants.js';
import { AddressMatcher } from '../../lib/net/matcher.js';
import type { Stage, StageFactory } from '../../core/stage.js';

export const createAclStage: StageFactory = (_options, env): Stage => {
  let allow = new AddressMatcher(env.config.allow);
  const refused = env.metrics.counter('acl_refused_total', 'queries refused by the allow list');
  return {
    name: 'acl',
    handle(ctx, next) {
      if (allow.matches(ctx.client.address)) return next();
      refused.value++;
      ctx.note(`acl: ${ctx.client.address} is not in allow`);
      ctx.respondError('acl', Rcode.REFUSED);
    },
    reload(config) {
      allow = new AddressMatcher(config.allow);
    },
  };
};
