// The forward stage's options: their JSON Schema, with the defaults, and their type.
// The upstreams themselves stay a top-level key (`upstreams`): the address list, not a tuning.

import type { OptionsSpec } from '../../core/stage.js';
import type { SubnetPrefixes } from '../../lib/dns/ecs.js';
import { typeFromName } from '../../lib/dns/constants.js';
import { checkPresentationName } from '../../lib/dns/name.js';
import type { UpstreamPolicy } from '../../config/types.js';

/** Marking upstreams down and probing them back (CoreDNS forward's max_fails and health_check). */
export interface HealthOptions {
  /** Failed attempts in a row (timeouts, unusable replies) before an upstream is marked down. */
  readonly maxFails: number;
  /** Milliseconds between probes of an upstream marked down. */
  readonly checkInterval: number;
  /** The question a probe asks: any well-formed reply marks the upstream up again. */
  readonly probeName: string;
  readonly probeType: string;
}

export interface ForwardOptions {
  /** Milliseconds to wait for one upstream at most: the cap of each attempt's adaptive timeout. */
  readonly timeout: number;
  /** The shortest adaptive timeout (ms): an RTO measured below it is raised to it. */
  readonly minTimeout: number;
  /** Milliseconds before SERVFAIL, across all upstreams. */
  readonly deadline: number;
  readonly maxOutstanding: number;
  /** DNS 0x20: random letter case in upstream questions, required back exactly. */
  readonly randomizeCase: boolean;
  /** UDP sockets (source ports) per upstream, one picked at random per query (Unbound's outgoing-range). */
  readonly sourcePorts: number;
  /**
   * EDNS Client Subnet sent upstream (RFC 7871): off, or the client's address cut to these
   * prefixes; answers are then cached per the scope the upstream gives.
   */
  readonly clientSubnet: 'off' | SubnetPrefixes;
  /** Which upstream of a route is asked first; a route's own `policy` overrides it. */
  readonly policy: UpstreamPolicy;
  readonly health: HealthOptions;
}

/** RFC 7871 section 11.1: longer prefixes than these tell the upstreams who the client is. */
export const PRIVATE_SUBNET_PREFIXES: SubnetPrefixes = { ipv4: 24, ipv6: 56 };

export const DEFAULT_HEALTH: HealthOptions = { maxFails: 3, checkInterval: 500, probeName: '.', probeType: 'NS' };

/**
 * The floor of the adaptive per-attempt timeout. Unbound's 50 ms floor is for authorities, whose
 * RTT is the network's; linedns's upstreams are recursors, whose answers to uncached names take
 * their own resolution time (tens to a few hundred ms) beyond a measured RTT of a millisecond.
 */
export const DEFAULT_MIN_TIMEOUT = 200;

/** Source ports per upstream: 1024 x 65,536 IDs = 2^26 tries for an off-path forger (docs/security.md). */
export const DEFAULT_SOURCE_PORTS = 1024;

export const forwardOptions: OptionsSpec<ForwardOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      timeout: {
        description: "Milliseconds to wait for one upstream at most. An attempt that has another upstream to fail over to waits the upstream's measured RTO instead (376 ms untried, doubled by each timeout), never longer than this.",
        type: 'integer',
        minimum: 10,
        maximum: 60000,
        default: 2000,
      },
      minTimeout: {
        description: "The shortest adaptive timeout in milliseconds: an upstream's RTO measured below it is raised to it, so a recursor resolving an uncached name is not failed over from at once.",
        type: 'integer',
        minimum: 10,
        maximum: 60000,
        default: DEFAULT_MIN_TIMEOUT,
      },
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
      clientSubnet: {
        description: 'EDNS Client Subnet sent upstream: "off", or the prefix lengths the client\'s address is cut to, e.g. {"ipv4": 24, "ipv6": 56}.',
        default: 'off',
        oneOf: [
          { type: 'string', enum: ['off'] },
          {
            type: 'object',
            additionalProperties: false,
            required: ['ipv4', 'ipv6'],
            properties: {
              ipv4: { description: 'Source prefix length sent for IPv4 clients.', type: 'integer', minimum: 0, maximum: 32 },
              ipv6: { description: 'Source prefix length sent for IPv6 clients.', type: 'integer', minimum: 0, maximum: 128 },
            },
          },
        ],
      },
      policy: {
        description: 'Which upstream of a route is asked first: in order ("sequential", failover), "random", "round_robin", or "fastest" (smoothed latency; untried ones first). The others follow on failure.',
        enum: ['sequential', 'random', 'round_robin', 'fastest'],
        default: 'sequential',
      },
      health: {
        description: 'Upstreams marked down after maxFails failed attempts in a row get no client query while another upstream of their route is up, and are probed every checkInterval ms until they answer.',
        type: 'object',
        additionalProperties: false,
        properties: {
          maxFails: { description: 'Failed attempts in a row (timeouts, unusable replies; not ICMP errors) before an upstream is marked down.', type: 'integer', minimum: 1, maximum: 1000, default: DEFAULT_HEALTH.maxFails },
          checkInterval: { description: 'Milliseconds between probes of an upstream marked down.', type: 'integer', minimum: 50, maximum: 600000, default: DEFAULT_HEALTH.checkInterval },
          probeName: { description: 'The name a probe asks for ("." by default, as CoreDNS).', type: 'string', minLength: 1, default: DEFAULT_HEALTH.probeName },
          probeType: { description: 'The type a probe asks for (NS by default).', type: 'string', pattern: '^([A-Za-z][A-Za-z0-9]*|TYPE[0-9]+)$', default: DEFAULT_HEALTH.probeType },
        },
        default: DEFAULT_HEALTH,
      },
    },
  },
  topLevel: { forward: '.' },
  check(o, report) {
    const why = checkPresentationName(o.health.probeName, false);
    if (why !== null) report(['health', 'probeName'], 'LDNS_SCHEMA_PATTERN', `${JSON.stringify(o.health.probeName)} ${why}; expected a domain name, e.g. "." or "health.example"`);
    if (typeFromName(o.health.probeType) === undefined) report(['health', 'probeType'], 'LDNS_SCHEMA_PATTERN', `${JSON.stringify(o.health.probeType)} is not a record type; expected e.g. NS, A or TYPE65`);
    if (o.sourcePorts < DEFAULT_SOURCE_PORTS) {
      report(
        ['sourcePorts'],
        'LDNS_WEAK_SOURCE_PORTS',
        `${o.sourcePorts} source ports leave an off-path forger ${o.sourcePorts} x 65,536 port and ID combinations per query, fewer than 2^26; expected at least ${DEFAULT_SOURCE_PORTS} unless every path to the upstreams is trusted`,
      );
    }
    if (o.clientSubnet !== 'off') {
      for (const family of ['ipv4', 'ipv6'] as const) {
        const bits = o.clientSubnet[family];
        const most = PRIVATE_SUBNET_PREFIXES[family];
        if (bits > most) {
          report(
            ['clientSubnet', family],
            'LDNS_ECS_PREFIX_LONG',
            `a /${bits} client subnet tells the upstreams more of each client's address than RFC 7871 section 11.1 advises; expected at most /${most}`,
          );
        }
      }
    }
  },
};
