// The acl stage's options: their JSON Schema, with the defaults, and their type.
// linedns.schema.json is generated from the schema (npm run schemas); read at load time.

import { badCidrs } from '../../lib/net/address.js';
import type { OptionsSpec } from '../../core/stage.js';

export interface AclOptions {
  /** Client networks served; every other client gets REFUSED. */
  readonly allow: readonly string[];
}

export const aclOptions: OptionsSpec<AclOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      allow: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Client networks (CIDR) served; others get REFUSED. Default: loopback only.', default: ['127.0.0.0/8', '::1/128'] },
    },
  },
  topLevel: { allow: 'allow' },
  check(o, report) {
    for (const bad of badCidrs(o.allow)) report(['allow', bad.index], 'LDNS_BAD_CIDR', bad.message);
  },
};
