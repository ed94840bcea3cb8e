// The stable codes of configuration issues (fastify's lib/errors.js idea): one per kind of
// problem, with its severity and a one-line summary; docs/errors.md explains each one.

export type Severity = 'error' | 'warning';

export interface CodeInfo {
  readonly severity: Severity;
  readonly summary: string;
}

/**
 * Every code a config issue may carry. A code names a kind of problem, not a message: messages
 * may be reworded, codes stay, so scripts and searches can rely on them. test/errors.test.ts
 * fails for a code here that docs/errors.md does not explain or that no config triggers.
 */
export const CONFIG_CODES = {
  // Reading the files
  LDNS_FILE_UNREADABLE: { severity: 'error', summary: 'A config file named by linedns.json or a flag cannot be read.' },
  LDNS_JSON_ENCODING: { severity: 'error', summary: 'A config file is not UTF-8.' },
  LDNS_JSON_SYNTAX: { severity: 'error', summary: 'A config file is not valid JSON (comments allowed), or is empty.' },
  LDNS_JSON_DEPTH: { severity: 'error', summary: 'A config file nests [ and { deeper than 64 levels.' },
  LDNS_DUPLICATE_KEY: { severity: 'error', summary: 'An object has the same key twice.' },

  // The JSON Schemas (one code per schema keyword family)
  LDNS_SCHEMA_TYPE: { severity: 'error', summary: 'A value has the wrong JSON type, or fits none of the shapes accepted there.' },
  LDNS_SCHEMA_REQUIRED: { severity: 'error', summary: 'An object lacks a property it must have.' },
  LDNS_SCHEMA_UNKNOWN_PROPERTY: { severity: 'error', summary: 'An object has a property the schema does not know (often a typo).' },
  LDNS_SCHEMA_ENUM: { severity: 'error', summary: 'A value is not one of the values allowed there.' },
  LDNS_SCHEMA_PATTERN: { severity: 'error', summary: 'A string does not have the form expected there.' },
  LDNS_SCHEMA_RANGE: { severity: 'error', summary: 'A number is outside its allowed range.' },
  LDNS_SCHEMA_SIZE: { severity: 'error', summary: 'An array, string or object is empty or has too many members.' },

  // listen and upstreams
  LDNS_BAD_ADDRESS: { severity: 'error', summary: 'A listen address or upstream is not an IP address with a valid port.' },
  LDNS_LISTEN_WILDCARD: { severity: 'error', summary: 'A listen address is a wildcard (0.0.0.0 or [::]).' },
  LDNS_ADMIN_WILDCARD: { severity: 'error', summary: 'The admin endpoint listens on a wildcard address without an explicit allow list.' },
  LDNS_UPSTREAM_PORT_ZERO: { severity: 'error', summary: 'An upstream has port 0.' },
  LDNS_UPSTREAM_SELF: { severity: 'error', summary: "An upstream is one of linedns's own listen addresses." },
  LDNS_TLS_SERVERNAME: { severity: 'error', summary: 'A "tls" upstream has neither servername nor pin, a servername that is not a host name, or a servername on a udp/tcp upstream.' },
  LDNS_TLS_PIN: { severity: 'error', summary: 'A "tls" upstream pin is not "sha256/" and the base64 of 32 octets, or a pin is on a udp/tcp upstream.' },
  LDNS_TLS_CA: { severity: 'error', summary: 'A "tls" upstream\'s ca file cannot be read or holds no PEM certificate, or a ca is on a udp/tcp upstream.' },
  LDNS_ROUTE_ZONE: { severity: 'error', summary: 'A route zone is not a domain name.' },
  LDNS_ROUTE_DUPLICATE: { severity: 'error', summary: 'Two routes have the same zone and labels, or an unlabelled route is for the root (the top-level upstreams are).' },
  LDNS_ROUTE_UNKNOWN_LABEL: { severity: 'error', summary: 'A route label names no line of smart-line.json, so no client can reach the route.' },
  LDNS_BAD_CIDR: { severity: 'error', summary: 'A network is not a valid CIDR.' },

  // records.json
  LDNS_RECORD_NAME: { severity: 'error', summary: 'A record owner or a name in rdata is not a valid domain name.' },
  LDNS_RECORD_ADDRESS: { severity: 'error', summary: 'The rdata of an A or AAAA record is not an address of that family.' },
  LDNS_RECORD_TXT_LENGTH: { severity: 'error', summary: 'A TXT string is longer than 255 octets.' },
  LDNS_RECORD_SOA_WILDCARD: { severity: 'error', summary: 'An SOA record has a wildcard owner.' },
  LDNS_RECORD_CNAME_CONFLICT: { severity: 'error', summary: 'A name has a CNAME and other records visible to the same clients.' },
  LDNS_RECORD_RDATA_IGNORED: { severity: 'warning', summary: 'A record with an "action" also has rdata, which is ignored.' },
  LDNS_RECORD_UNKNOWN_LABEL: { severity: 'warning', summary: 'A record label names no line of smart-line.json.' },

  // pipeline and stage options
  LDNS_UNKNOWN_STAGE: { severity: 'error', summary: 'A pipeline entry names no built-in stage.' },
  LDNS_STAGE_MODULE_MISSING: { severity: 'error', summary: 'A pipeline entry names a stage module file that does not exist.' },
  LDNS_REQUIREMENT: { severity: 'error', summary: 'A stage needs something no stage on the required side of it provides.' },
  LDNS_UNUSED_KEY: { severity: 'warning', summary: 'A top-level key is set for a stage that is not in the pipeline.' },
  LDNS_CACHE_TTL_ORDER: { severity: 'error', summary: 'The cache minTtl is above its maxTtl.' },
  LDNS_WEAK_SOURCE_PORTS: { severity: 'warning', summary: 'forward.sourcePorts is below 1024, weakening defence against off-path forgery.' },
  LDNS_ECS_PREFIX_LONG: { severity: 'warning', summary: 'forward.clientSubnet sends a longer prefix than RFC 7871 advises (/24, /56).' },
  LDNS_LOG_FILTER: { severity: 'error', summary: 'A log stage filter names no rcode, or no domain name.' },

  // Rewrite rules (the rewrite stage)
  LDNS_REWRITE_NAME: { severity: 'error', summary: 'A rewrite rule side is not a domain name (or "*." and one).' },
  LDNS_REWRITE_FORM: { severity: 'error', summary: 'A rewrite rule has "*." on one side only, or rewriteFrom is not an object of exact names.' },
  LDNS_REWRITE_DUPLICATE: { severity: 'error', summary: 'Two rewrite rules have the same "from".' },
  LDNS_REWRITE_CHAIN: { severity: 'error', summary: 'A rewrite rule\'s result is rewritten again, by another rule or by itself.' },
  LDNS_REWRITE_UNKNOWN_LABEL: { severity: 'warning', summary: 'A rewrite rule label names no line of smart-line.json.' },

  // Zone files (the zones stage)
  LDNS_ZONE_ENTRY: { severity: 'error', summary: 'A zones entry in linedns.json is wrong: a bad origin, or a second unlabelled zone for one apex.' },
  LDNS_ZONE_SYNTAX: { severity: 'error', summary: 'A zone file does not parse as an RFC 1035 master file.' },
  LDNS_ZONE_SOA: { severity: 'error', summary: 'A zone has no SOA at its apex, a second one, one below the apex, or a short one.' },
  LDNS_ZONE_OUT_OF_ZONE: { severity: 'error', summary: 'A zone file holds a name outside its origin.' },
  LDNS_ZONE_CNAME: { severity: 'error', summary: 'A zone has a CNAME beside other data at one owner, two CNAMEs, or a CNAME whose data is not a name.' },
  LDNS_ZONE_DNAME: { severity: 'warning', summary: 'A zone holds data below a DNAME, which redirects every name under its owner: that data is never served.' },
  LDNS_ZONE_UNKNOWN_LABEL: { severity: 'warning', summary: 'A zone label names no line of smart-line.json.' },

  // Golden queries (the tests file of `linedns test` and of `"tests"`)
  LDNS_GOLDEN_VALUE: { severity: 'error', summary: 'A golden test names a client, type or client subnet that is not one, or a mock key or answer that does not parse.' },
} as const satisfies Record<string, CodeInfo>;

export type ConfigCode = keyof typeof CONFIG_CODES;

/**
 * The codes of the command line's own errors (not of a config file): printed as
 * `linedns: MESSAGE [CODE]`, always an error, exit status 2. Documented and tested like the others.
 */
export const CLI_CODES = {
  LDNS_CLI_USAGE: { severity: 'error', summary: 'The command line is not one linedns understands: a command, flag or argument unknown, missing or extra.' },
  LDNS_CLI_BAD_VALUE: { severity: 'error', summary: 'A flag or argument has a value linedns does not accept.' },
} as const satisfies Record<string, CodeInfo>;

export type CliCode = keyof typeof CLI_CODES;

export function severityOf(code: ConfigCode): Severity {
  return CONFIG_CODES[code].severity;
}
