// acl stage: REFUSED for clients whose address is outside `allow` (default: loopback only),
// so linedns never becomes an open resolver by accident.

import { Rcode } from '../../lib/dns/constants.js';
import { AddressMatcher } from '../../lib/net/matcher.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { aclOptions, type AclOptions } from './options.js';

function createAclStage(options: AclOptions, env: StageEnv): Stage<AclOptions> {
  let allow = new AddressMatcher(options.allow);
  const refused = env.metrics.counter('acl_refused_total', 'queries refused by the allow list');
  return {
    name: 'acl',
    handle(ctx, next) {
      if (allow.matches(ctx.client.address)) return next();
      refused.value++;
      ctx.note(`acl: ${ctx.client.address} is not in allow`);
      ctx.respondError('acl', Rcode.REFUSED);
    },
    reload(_config, o) {
      allow = new AddressMatcher(o.allow);
    },
  };
}

export const aclStage: StageDefinition<AclOptions> = {
  name: 'acl',
  summary: 'answers REFUSED to clients outside `allow` (loopback by default)',
  options: aclOptions,
  requires: [{ name: 'query', where: 'before', reason: 'a refusal echoes the decoded question' }],
  memoSafe: true,
  create: createAclStage,
};
