// The stage contract: one small onion-style interface every built-in and user stage implements.
// A stage may answer and stop, call next() and post-process, or only observe.

import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/types.js';
import type { Metrics } from '../lib/metrics.js';
import type { ClientInfo, QueryContext, Transport } from './context.js';
import type { ViewRegistry } from './views.js';

/**
 * next() and handle() may complete synchronously (return undefined) or asynchronously (return a
 * promise). Built-in stages stay synchronous on the cache-hit path so a hit never waits a tick;
 * an `async` user stage that simply `await`s next() works unchanged.
 */
export type Next = () => void | Promise<void>;

/** One reply that left, as a query log needs it; built only when some stage observes. */
export interface ReplyInfo {
  /** When it was sent, milliseconds since the Unix epoch. */
  readonly time: number;
  readonly client: ClientInfo;
  readonly transport: Transport;
  /** The query's ID (the reply's). */
  readonly id: number;
  /** The question as the client asked it (lower case, no trailing dot); '' when undecodable. */
  readonly name: string;
  /** QTYPE, or 0 when undecodable. */
  readonly qtype: number;
  /** The reply's RCODE, with the extended bits of its OPT (16: BADVERS). */
  readonly rcode: number;
  /** ANCOUNT of the reply as sent (0 when truncated). */
  readonly answers: number;
  /** The stage that answered (for a memo hit, the one that made the kept answer). */
  readonly answeredBy: string;
  /** Sent truncated (TC set) because it was too large for the client's UDP size. */
  readonly truncated: boolean;
  /** A UDP repeat answered from the answer memo without running the pipeline. */
  readonly memo: boolean;
  /** From the query's arrival to the send, in microseconds. */
  readonly durationUs: number;
  /** Octets sent (without the TCP length prefix). */
  readonly size: number;
}

export interface Stage {
  readonly name: string;
  handle(ctx: QueryContext, next: Next): void | Promise<void>;
  /**
   * Sees every reply that leaves, memo hits and truncated UDP replies included, after it was
   * sent (it cannot change it: use ctx.onReply for that). Collected once when the pipeline is
   * built; a pipeline without any costs the transports one null check per reply.
   */
  observe?(reply: ReplyInfo): void;
  /**
   * Declares that handle() only calls next() and changes neither the context nor the reply (no
   * respond, no onReply, no rewriteQuery): such a user stage keeps the UDP answer memo on, and
   * its observe() sees the memo hits too. Any other user stage turns the memo off.
   */
  readonly observesOnly?: boolean;
  /**
   * The server now listens: traffic that may come back through the listeners can start (the
   * forward stage's loop probe). Called once per stage, after start or a pipeline rebuild.
   */
  started?(): void;
  /** Apply a new, already validated configuration in place (SIGHUP). */
  reload?(config: RuntimeConfig): void | Promise<void>;
  /** Release sockets and timers. */
  close?(): void | Promise<void>;
}

/** What stages share: logging, counters, and the configuration they were built from. */
export interface StageEnv {
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly config: RuntimeConfig;
  /**
   * The server's view classifier: the smartline stage registers its own when built; a user
   * stage may register another (`env.views.register(ctx => env.views.intern([...lines]))`).
   */
  readonly views: ViewRegistry<QueryContext>;
}

export type StageFactory = (options: unknown, env: StageEnv) => Stage | Promise<Stage>;
