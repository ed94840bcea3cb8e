// The per-query state that travels down the pipeline and back: one object per query.
// Stages read the parsed query and leave a wire reply in `response`; the transport sends it.

import type { ParsedQuery } from '../lib/dns/query.js';
import { errorReply, type ScannedTemplate } from '../lib/dns/template.js';
import type { LineSet } from './views.js';
import type { Counter } from '../lib/metrics.js';

export type Transport = 'udp' | 'tcp';

export interface ClientInfo {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** Resolves the smart-line lines of a query's client; set by the smartline stage. */
export type LineClassifier = (ctx: QueryContext) => LineSet;

export class QueryContext {
  /** Set by the decode stage; stages after it may rely on it. */
  query: ParsedQuery | null = null;
  /** Wire-format reply; the transport truncates it for UDP when needed. */
  response: Buffer | null = null;
  /** Name of the stage that produced `response`, for logs and `explain`. */
  answeredBy = '';
  /** Why the query was dropped, when no reply is sent on purpose. */
  dropReason = '';
  /** The validated upstream reply behind `response`, for the cache to store. */
  upstreamReply: ScannedTemplate | null = null;
  classifier: LineClassifier | null = null;
  /**
   * Set by a stage whose answer depends only on the query's octets, the client's address and the
   * current second (cache hits, local records): the UDP transport may then send the same answer
   * to a repeat within that second without running the pipeline, bumping this counter for it.
   */
  reusable: Counter | null = null;
  private lineSet: LineSet | null = null;
  /** Notes for `explain` and logs; null (and nothing allocated) unless tracing. */
  trace: string[] | null = null;

  constructor(
    readonly raw: Buffer,
    readonly client: ClientInfo,
    readonly transport: Transport,
    /** Milliseconds since an arbitrary epoch, from performance.now(). */
    readonly receivedAt: number,
  ) {}

  /** The client's smart-line lines, classified once on first use. */
  get lines(): LineSet | null {
    if (this.lineSet === null && this.classifier !== null) this.lineSet = this.classifier(this);
    return this.lineSet;
  }

  get tracing(): boolean {
    return this.trace !== null;
  }

  set tracing(on: boolean) {
    this.trace = on ? (this.trace ?? []) : null;
  }

  note(message: string): void {
    if (this.trace !== null) this.trace.push(message);
  }

  respond(stage: string, response: Buffer): void {
    this.response = response;
    this.answeredBy = stage;
  }

  /**
   * Answers with `rcode` and no records (REFUSED, NXDOMAIN, SERVFAIL, ...): the question and an
   * OPT are echoed as the client sent them. Needs the decoded query.
   */
  respondError(stage: string, rcode: number): void {
    const q = this.query;
    if (q === null) throw new Error(`${stage}: respondError needs the decode stage before it`);
    this.respond(stage, errorReply(this.raw, q.id, q.flags, rcode, q.questionEnd, q.edns));
  }
}
