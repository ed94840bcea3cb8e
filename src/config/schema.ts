// linedns.json's JSON Schema, composed: the server's own keys (here) and each stage's options
// (its options.ts), both as top-level keys and on pipeline entries. schemas/linedns.schema.json is this, written out.

import type { JsonSchema, StageDefinition } from '../core/stage.js';
import { isModulePathPattern } from './pipeline-names.js';

const ADMIN_ADDRESS = '^(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+|localhost):[0-9]{1,5}$';
const NAME_OR_PATH = { type: 'string', minLength: 1 } as const;

/** The keys linedns.json has whatever the stages. */
const SERVER_KEYS: Record<string, JsonSchema> = {
  $schema: { type: 'string' },
  listen: {
    description: 'Addresses to serve on, UDP and TCP: HOST:PORT, IPv6 as [ADDR]:PORT.',
    type: 'array',
    minItems: 1,
    items: { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+|localhost):[0-9]{1,5}$' },
  },
  upstreams: {
    description: 'Upstream resolvers, tried in order: "resolv.conf", "HOST[:PORT]" or an object ({"address", "port", "protocol": "udp" | "tcp" | "tls", and for tls "servername", "pin", "ca"}).',
    type: 'array',
    minItems: 1,
    items: {
      oneOf: [
        { type: 'string', minLength: 1 },
        {
          type: 'object',
          additionalProperties: false,
          required: ['address'],
          properties: {
            address: { type: 'string', minLength: 1 },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
            protocol: { enum: ['udp', 'tcp', 'tls'] },
            servername: { description: 'tls: the name the certificate must carry (required unless pin is given).', type: 'string' },
            pin: { description: 'tls: acceptable server keys, "sha256/BASE64" of the SubjectPublicKeyInfo (RFC 7858 pins).', type: 'array', minItems: 1, items: { type: 'string' } },
            ca: { description: 'tls: PEM file of the CAs to trust instead of the system ones, relative to this file.', type: 'string', minLength: 1 },
          },
        },
      ],
    },
  },
  routes: {
    description: 'Upstreams per zone (the forward stage): the longest matching zone wins; a route with "labels" serves only clients in those lines; the top-level "upstreams" are the route for ".".',
    type: 'array',
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['zone', 'upstreams'],
      properties: {
        zone: { description: 'The zone: questions for it and every name below it.', type: 'string', minLength: 1 },
        upstreams: { description: 'This route\'s upstreams, in the forms of the top-level "upstreams".', type: 'array', minItems: 1, items: { $ref: '#/properties/upstreams/items' } },
        labels: { description: 'Lines of smart-line.json whose clients this route serves; others take the next shorter match.', type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        forceTcp: { description: 'Ask this route\'s upstreams over TCP only.', type: 'boolean' },
        policy: { description: 'Overrides forward.policy for this route.', enum: ['sequential', 'random', 'round_robin', 'fastest'] },
      },
    },
  },
  records: { description: 'Path of records.json, relative to this file, or an http(s) URL (polled, see "sources").', type: 'string', minLength: 1 },
  zones: {
    description: 'RFC 1035 master files served by the zones stage: a path (relative to this file) or an http(s) URL, or {file, origin, labels}.',
    type: 'array',
    items: {
      oneOf: [
        { type: 'string', minLength: 1 },
        {
          type: 'object',
          additionalProperties: false,
          required: ['file'],
          properties: {
            file: { type: 'string', minLength: 1 },
            origin: { type: 'string', minLength: 1 },
            labels: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          },
        },
      ],
    },
  },
  smartLine: { description: 'Path of smart-line.json, relative to this file, or an http(s) URL.', type: 'string', minLength: 1 },
  rewrite: {
    description: 'Resolve names as others (the rewrite stage): {"from": "www.example.org", "to": "foo.novalocal"}, "*.a" -> "*.b" for a subtree, "labels" for some lines only.',
    type: 'array',
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['from', 'to'],
      properties: {
        from: { type: 'string', minLength: 1 },
        to: { type: 'string', minLength: 1 },
        labels: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
      },
    },
  },
  tests: { description: 'Path of a golden queries file (schemas/tests.schema.json), relative to this file: a reload whose tests fail is not applied.', type: 'string', minLength: 1 },
  rewriteFrom: { description: 'Path of a JSON file of exact rewrite rules, {"FROM": "TO", ...}, relative to this file, or an http(s) URL.', type: 'string', minLength: 1 },
  smartLineUnmatched: {
    description: 'What a client in no line sees: every record ("all", Pipy\'s behaviour) or only unlabelled ones.',
    enum: ['all', 'unlabelled'],
  },
  tcp: {
    type: 'object',
    additionalProperties: false,
    properties: {
      idleTimeout: { type: 'integer', minimum: 100, maximum: 3600000 },
      maxConnectionTime: { type: 'integer', minimum: 100, maximum: 86400000 },
      maxConnections: { type: 'integer', minimum: 1, maximum: 1000000 },
      maxConnectionsPerClient: { type: 'integer', minimum: 1, maximum: 1000000 },
      maxQueriesPerConnection: { type: 'integer', minimum: 1, maximum: 100000000 },
      maxPipelined: { type: 'integer', minimum: 1, maximum: 100000 },
    },
  },
  sources: {
    description: 'How URL sources are polled: every "interval" seconds (jitter: a fraction of it, random per wait), one fetch at most "timeout" seconds and "maxSize" bytes; the last good copy of each is kept in "dir".',
    type: 'object',
    additionalProperties: false,
    properties: {
      interval: { type: 'integer', minimum: 1, maximum: 86400 },
      jitter: { type: 'number', minimum: 0, maximum: 1 },
      dir: { type: 'string', minLength: 1 },
      timeout: { type: 'integer', minimum: 1, maximum: 600 },
      maxSize: { type: 'integer', minimum: 1024, maximum: 1073741824 },
    },
  },
  resolvConf: { description: 'The resolv.conf that "resolv.conf" in upstreams reads (and follows: a change reloads).', type: 'string', minLength: 1 },
  maxUdpSize: { type: 'integer', minimum: 512, maximum: 65535 },
  unanswered: {
    description: 'What a query no stage answered gets: REFUSED, NXDOMAIN (as the Twisted query logger answered everything) or SERVFAIL.',
    enum: ['refused', 'nxdomain', 'servfail'],
  },
  answerMemo: { type: 'boolean' },
  watch: { description: 'Reload when linedns.json or a file it names changes (SIGHUP reloads either way).', type: 'boolean' },
  logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  workers: { type: 'integer', minimum: 1, maximum: 64 },
  admin: {
    description: 'HTTP admin endpoint (/metrics, /healthz, /readyz, /explain, /cache): "HOST:PORT", or {"listen": "HOST:PORT", "allow": [CIDR, ...]}. Off when absent.',
    oneOf: [
      { type: 'string', pattern: ADMIN_ADDRESS },
      {
        type: 'object',
        additionalProperties: false,
        required: ['listen'],
        properties: {
          listen: { type: 'string', pattern: ADMIN_ADDRESS },
          allow: { type: 'array', items: { type: 'string', minLength: 1 } },
        },
      },
    ],
  },
};

/**
 * Each stage's options schema sits once in `$defs` (without `required`, which is checked once an
 * entry's options and the top-level keys are merged); the pipeline entry and the top-level keys
 * refer to it.
 */
export function composeLinednsSchema(stages: readonly StageDefinition[]): JsonSchema {
  const properties: Record<string, JsonSchema> = { ...SERVER_KEYS };
  const defs: Record<string, JsonSchema> = {};
  const entries: Record<string, JsonSchema> = {};
  for (const def of stages) {
    if (def.options === undefined) {
      entries[def.name] = { type: 'object', additionalProperties: false, properties: {} };
      continue;
    }
    const { required, ...rest } = def.options.schema;
    defs[def.name] = rest;
    const ref = `#/$defs/${def.name}`;
    entries[def.name] = { $ref: ref };
    for (const [key, option] of Object.entries(def.options.topLevel ?? {})) {
      properties[key] = option === '.' ? { $ref: ref, ...(required === undefined ? {} : { type: 'object', required }) } : { $ref: `${ref}/properties/${option}` };
    }
  }
  properties.pipeline = {
    description: 'Stages in order: a built-in name or the path (./x.js) of a user stage module, or {"NAME": {options}}.',
    type: 'array',
    minItems: 1,
    items: {
      oneOf: [
        NAME_OR_PATH,
        {
          type: 'object',
          minProperties: 1,
          maxProperties: 1,
          properties: entries,
          patternProperties: { [isModulePathPattern]: { type: 'object' } },
          additionalProperties: false,
        },
      ],
    },
  };
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'linedns.schema.json',
    title: 'linedns server configuration',
    type: 'object',
    additionalProperties: false,
    properties,
    $defs: defs,
  };
}
