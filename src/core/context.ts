// The per-query state that travels down the pipeline and back: one object per query.
// Stages read the parsed query and leave a wire reply in `response`; the transport sends it.

import type { ParsedQuery } from '../lib/dns/query.js';
import { errorReply, type ScannedTemplate, type WireTemplate } from '../lib/dns/template.js';
import type { LineSet } from './views.js';
import type { Counter } from '../lib/metrics.js';

export type Transport = 'udp' | 'tcp';

export interface ClientInfo {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** Resolves the smart-line lines of a query's client; registered by the smartline stage. */
export type LineClassifier = (ctx: QueryContext) => LineSet;

/**
 * The local records of the question's name and type, labels and all, as the records stage found
 * them. Encoding stays inside records: a stage that knows the client's view (smartline) asks for
 * the answer of that view, which records encodes once per view and memoises.
 */
export interface LocalCandidates {
  /** Whether some record involved carries labels, so that what a client gets depends on its view. */
  readonly byView: boolean;
  /**
   * Answers `ctx` (as `stage`) with what `view` may see, setting `ctx.localAnswer`; false, with
   * nothing answered, when nothing is visible to that view. `view` null: no classification, every
   * record visible (only used when `byView` is false, or with no smartline configured).
   */
  answer(ctx: QueryContext, stage: string, view: LineSet | null): boolean;
}

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
  /** Set by the engine from the classifier a stage registered at build time; see `lines`. */
  classifier: LineClassifier | null = null;
  /** Set by the records stage when local data exists for the question's name (any view). */
  candidates: LocalCandidates | null = null;
  /** The local answer behind `response`, as a template, for the cache to store. */
  localAnswer: WireTemplate | null = null;
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
