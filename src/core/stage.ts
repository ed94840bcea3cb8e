// The stage contract: one small onion-style interface every built-in and user stage implements.
// A stage may answer and stop, call next() and post-process, or only observe.

import type { Logger } from 'pino';
import type { RuntimeConfig } from '../config/types.js';
import type { Metrics } from '../lib/metrics.js';
import type { QueryContext } from './context.js';
import type { ViewRegistry } from './views.js';

/**
 * next() and handle() may complete synchronously (return undefined) or asynchronously (return a
 * promise). Built-in stages stay synchronous on the cache-hit path so a hit never waits a tick;
 * an `async` user stage that simply `await`s next() works unchanged.
 */
export type Next = () => void | Promise<void>;

export interface Stage {
  readonly name: string;
  handle(ctx: QueryContext, next: Next): void | Promise<void>;
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
