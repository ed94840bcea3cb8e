// The smartline stage's options: their JSON Schema, with the defaults, and their type.
// The lines themselves are data (smart-line.json, the top-level `smartLine`), not options.

import { badCidrs } from '../../lib/net/address.js';
import type { OptionsSpec } from '../../core/stage.js';

export interface SmartLineOptions {
  /** Proxies whose EDNS Client Subnet is believed: their clients are classified by it. */
  readonly trustEcsFrom: readonly string[];
}

export const smartLineOptions: OptionsSpec<SmartLineOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      trustEcsFrom: {
        description: 'Networks (CIDR) of proxies whose EDNS Client Subnet address classifies their clients.',
        type: 'array',
        items: { type: 'string', minLength: 1 },
        default: [],
      },
    },
  },
  topLevel: { trustEcsFrom: 'trustEcsFrom' },
  check(o, report) {
    for (const bad of badCidrs(o.trustEcsFrom)) report(['trustEcsFrom', bad.index], 'LDNS_BAD_CIDR', bad.message);
  },
};
