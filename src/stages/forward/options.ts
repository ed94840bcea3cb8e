// The forward stage's options: their JSON Schema, with the defaults, and their type.
// The upstreams themselves stay a top-level key (`upstreams`): the address list, not a tuning.

import type { OptionsSpec } from '../../core/stage.js';

export interface ForwardOptions {
  /** Milliseconds to wait for one upstream. */
  readonly timeout: number;
  /** Milliseconds before SERVFAIL, across all upstreams. */
  readonly deadline: number;
  readonly maxOutstanding: number;
  /** DNS 0x20: random letter case in upstream questions, required back exactly. */
  readonly randomizeCase: boolean;
  /** UDP sockets (source ports) per upstream, one picked at random per query (Unbound's outgoing-range). */
  readonly sourcePorts: number;
}

/** Source ports per upstream: 1024 x 65,536 IDs = 2^26 tries for an off-path forger (docs/security.md). */
export const DEFAULT_SOURCE_PORTS = 1024;

export const forwardOptions: OptionsSpec<ForwardOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      timeout: { description: 'Milliseconds to wait for one upstream.', type: 'integer', minimum: 10, maximum: 60000, default: 2000 },
      deadline: { description: 'Milliseconds before SERVFAIL, across all upstreams.', type: 'integer', minimum: 10, maximum: 120000, default: 4500 },
      maxOutstanding: { description: 'Upstream queries in flight at most; beyond it SERVFAIL.', type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
      randomizeCase: { description: 'DNS 0x20: random letter case in upstream questions, checked exactly on the reply.', type: 'boolean', default: false },
      sourcePorts: {
        description: 'UDP source ports (sockets) per upstream, one picked at random per query; below 1024 an off-path forger needs fewer than 2^26 tries.',
        type: 'integer',
        minimum: 1,
        maximum: 16384,
        default: DEFAULT_SOURCE_PORTS,
      },
    },
  },
  topLevel: { forward: '.' },
  check(o, report) {
    if (o.sourcePorts < DEFAULT_SOURCE_PORTS) {
      report(
        ['sourcePorts'],
        'LDNS_WEAK_SOURCE_PORTS',
        `${o.sourcePorts} source ports leave an off-path forger ${o.sourcePorts} x 65,536 port and ID combinations per query, fewer than 2^26; expected at least ${DEFAULT_SOURCE_PORTS} unless every path to the upstreams is trusted`,
      );
    }
  },
};
