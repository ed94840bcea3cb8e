// The validated, defaulted configuration every stage is built from.
// Produced only by config/load.ts, frozen; stages never see raw JSON.

import type { LogLevel } from '../lib/logger.js';
import type { ZoneRecord } from '../lib/dns/zonefile.js';

// Here too, so that core (which may import only this file of config, and only its types) can
// type a stage's options report with the codes.
export type { ConfigCode } from './codes.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface UpstreamConfig {
  host: string;
  port: number;
  protocol: 'udp' | 'tcp' | 'tls';
  /** DNS over TLS settings; present exactly when protocol is "tls". */
  tls?: UpstreamTls;
}

/** How a DNS over TLS upstream is authenticated (RFC 7858, RFC 8310's strict profile). */
export interface UpstreamTls {
  /** The name its certificate must carry (verified against `ca` or the system CAs); null: the pins alone authenticate it. */
  servername: string | null;
  /** Base64 SHA-256 digests of acceptable SubjectPublicKeyInfos (without "sha256/"); empty: no pin. */
  pins: readonly string[];
  /** PEM text of the CAs to trust instead of the system's, or null. */
  ca: string | null;
  /** Absolute path `ca` was read from, for messages and for telling reloads apart. */
  caFile: string | null;
}

/** How a route picks the upstream it asks first (the others follow on failure). */
export type UpstreamPolicy = 'sequential' | 'random' | 'round_robin' | 'fastest';

/**
 * One entry of `routes` (src/config/routes.ts): questions at or below `zone` go to its own
 * upstreams; the top-level `upstreams` are the route for the root, which is not listed here.
 */
export interface RouteConfig {
  /** Canonical (lower case, no trailing dot); '' for the root. */
  readonly zone: string;
  readonly upstreams: readonly UpstreamConfig[];
  /** Lines whose clients the route serves; null: every client. */
  readonly labels: readonly string[] | null;
  /** Every attempt over TCP (NodeLocal DNSCache's force_tcp to the cluster DNS). */
  readonly forceTcp: boolean;
  /** Overrides the forward stage's policy for this route; null: the stage's. */
  readonly policy: UpstreamPolicy | null;
}

export type RecordType = 'A' | 'AAAA' | 'CNAME' | 'MX' | 'TXT' | 'NS' | 'SRV' | 'PTR' | 'CAA' | 'SOA';

export interface RecordEntry {
  name: string;
  type?: RecordType;
  ttl?: number;
  rdata?: unknown;
  labels?: string[];
  action?: 'deny' | 'nxdomain';
}

/**
 * One rule of `rewrite` / `rewriteFrom`: questions for `from` are asked as `to`, and the reply
 * is renamed back. Names canonical (normalizeName); for a suffix rule (`*.` on both sides in the
 * file) `from` and `to` are the apexes of the two subtrees, which map onto each other.
 */
export interface RewriteRule {
  readonly from: string;
  readonly to: string;
  readonly suffix: boolean;
  /** Lines whose clients the rule applies to; null: every client. */
  readonly labels: readonly string[] | null;
}

/**
 * One stage of the pipeline: a built-in name or the absolute path of a user module, and its
 * options (for a built-in, validated with the schema's defaults; null for a stage that is off
 * without options; for a user module, the entry's object or undefined).
 */
export interface PipelineEntry {
  readonly stage: string;
  readonly options: unknown;
}

/** What a stage's requirement may ask of the loaded data besides the stage's own options. */
export interface PipelineFacts {
  /** The first local record that carries labels, or null. */
  readonly labelledRecord: { readonly name: string; readonly labels: readonly string[] } | null;
  /** The first zone of `zones` that carries labels (a view), or null / absent. */
  readonly labelledZone?: { readonly origin: string; readonly file: string; readonly labels: readonly string[] } | null;
  /** The first rewrite rule that carries labels (as written, `*.` included), or null. */
  readonly labelledRewrite?: { readonly from: string; readonly labels: readonly string[] } | null;
  /** The first route of `routes` that carries labels (its zone as written), or null / absent. */
  readonly labelledRoute?: { readonly zone: string; readonly labels: readonly string[] } | null;
}

/**
 * One zone of `zones`, parsed and checked (src/config/zones.ts). Frozen by the loader itself
 * (shallowly: its records hold RDATA buffers, which cannot be frozen), never changed after.
 */
export interface ZoneConfig {
  /** Absolute path of the master file. */
  readonly file: string;
  /** The apex, a canonical name (lower case, no trailing dot). */
  readonly origin: string;
  /** The lines whose clients see this zone (a view); null: every client. */
  readonly labels: readonly string[] | null;
  readonly records: readonly ZoneRecord[];
  /** A hash of the records, so a reload can tell whether the zone's data changed. */
  readonly digest: string;
}

export interface TcpConfig {
  idleTimeoutMs: number;
  maxConnectionMs: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
  maxQueriesPerConnection: number;
  maxPipelined: number;
}

/** A golden test's upstream answer, by "name TYPE" (lower-case name, no trailing dot). */
export interface GoldenMock {
  rcode: string;
  answers: string[];
  ttl: number;
}

export interface GoldenTest {
  client: string;
  name: string;
  type: string;
  ecs?: string;
  expect: { rcode: string; answers?: string[]; stage?: string };
}

/** A tests file (schemas/tests.schema.json), checked. */
export interface GoldenFile {
  file: string;
  mock: Record<string, GoldenMock>;
  tests: GoldenTest[];
}

/** The HTTP admin endpoint (metrics, health, explain, cache): `admin` in linedns.json. */
export interface AdminConfig {
  readonly host: string;
  readonly port: number;
  /** Clients (CIDRs) that may use it; everyone else gets 403. */
  readonly allow: readonly string[];
}

/** `sources`: how URL sources (records, smartLine, zones, rewriteFrom as http(s) URLs) are polled. */
export interface SourcesConfig {
  /** Between two polls of every URL, before jitter. */
  readonly intervalMs: number;
  /** Each wait is intervalMs times a random factor in [1 - jitter, 1 + jitter], so a fleet spreads out. */
  readonly jitter: number;
  /** Absolute path of the directory holding the last good copy of each URL's document. */
  readonly dir: string;
  /** One fetch (headers and body) at most. */
  readonly timeoutMs: number;
  /** A body larger than this is refused (a fetch failure). */
  readonly maxBytes: number;
}

export interface RuntimeConfig {
  /** Absolute path of linedns.json, or null when running on defaults. */
  file: string | null;
  listen: ListenAddress[];
  upstreams: UpstreamConfig[];
  /** `routes`, in the order written: per-zone (and per-line) upstreams beside the top-level ones. */
  routes: RouteConfig[];
  /** The stages in order, each with its options. */
  pipeline: PipelineEntry[];
  /** What the stages' requirements were checked against (checked again when built). */
  facts: PipelineFacts;
  records: RecordEntry[];
  recordsFile: string | null;
  /** The zones of `zones`, in the order written. */
  zones: ZoneConfig[];
  smartLine: Record<string, string[]>;
  smartLineFile: string | null;
  smartLineUnmatched: 'all' | 'unlabelled';
  /** `rewrite` then `rewriteFrom`'s rules, checked (no duplicate `from`, no chains). */
  rewrite: RewriteRule[];
  rewriteFile: string | null;
  tcp: TcpConfig;
  maxUdpSize: number;
  /** What a query no stage answered gets (a pipeline without forward that found nothing). */
  unanswered: 'refused' | 'nxdomain' | 'servfail';
  /** Repeats within a second answered without the pipeline (see docs/stages.md). */
  answerMemo: boolean;
  /** Reload when a config file changes (as on SIGHUP). */
  watch: boolean;
  logLevel: LogLevel;
  workers: number;
  /** The golden queries of `tests`, checked; a reload whose tests fail is refused. */
  tests: GoldenFile | null;
  testsFile: string | null;
  /** The admin endpoint, or null: off (the default). */
  admin: AdminConfig | null;
  /** The http(s) URLs among records, smartLine, zones and rewriteFrom, in that order. */
  sourceUrls: string[];
  sources: SourcesConfig;
  /** The resolv.conf the upstreams were read from (followed on change); null when none was. */
  resolvConf: string | null;
}
