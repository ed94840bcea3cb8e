// The validated, defaulted configuration every stage is built from.
// Produced only by config/load.ts; stages never see raw JSON.

import type { LogLevel } from '../lib/logger.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface UpstreamConfig {
  host: string;
  port: number;
  protocol: 'udp' | 'tcp';
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

export interface CacheConfig {
  maxEntries: number;
  minTtl: number;
  maxTtl: number;
  negativeTtl: number;
}

export interface ForwardConfig {
  timeoutMs: number;
  deadlineMs: number;
  maxOutstanding: number;
  /** DNS 0x20: random letter case in upstream questions, required back exactly. */
  randomizeCase: boolean;
  /** UDP sockets (source ports) per upstream, one picked at random per query (Unbound's outgoing-range). */
  sourcePorts: number;
}

export interface TcpConfig {
  idleTimeoutMs: number;
  maxConnectionMs: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
  maxQueriesPerConnection: number;
  maxPipelined: number;
}

export interface RateLimitConfig {
  qps: number;
  burst: number;
  ipv4Prefix: number;
  ipv6Prefix: number;
  action: 'refuse' | 'drop';
  maxClients: number;
}

export interface RuntimeConfig {
  /** Absolute path of linedns.json, or null when running on defaults. */
  file: string | null;
  listen: ListenAddress[];
  upstreams: UpstreamConfig[];
  /** Built-in stage names or absolute paths of user modules. */
  pipeline: string[];
  records: RecordEntry[];
  recordsFile: string | null;
  smartLine: Record<string, string[]>;
  smartLineFile: string | null;
  smartLineUnmatched: 'all' | 'unlabelled';
  cache: CacheConfig;
  allow: string[];
  trustEcsFrom: string[];
  forward: ForwardConfig;
  tcp: TcpConfig;
  rateLimit: RateLimitConfig | null;
  maxUdpSize: number;
  /** Repeats within a second answered without the pipeline (see docs/stages.md). */
  answerMemo: boolean;
  logLevel: LogLevel;
  workers: number;
}
