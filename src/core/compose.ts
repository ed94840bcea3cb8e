// Composes stages into one handler, Koa/CoreDNS style, without allocating promises per stage.
// A synchronous chain (a cache hit) runs to completion inside the caller's tick. next() runs the
// following stages on the caller's context, or on one it passes (a detached refresh, see fork()).

import type { QueryContext } from './context.js';
import type { Stage } from './stage.js';

export type Handler = (ctx: QueryContext) => void | Promise<void>;

export function compose(stages: readonly Stage[]): Handler {
  const n = stages.length;
  // One closure per position, built once: next() for stage i is dispatchers[i + 1].
  const dispatchers: ((ctx: QueryContext) => void | Promise<void>)[] = new Array(n + 1);
  dispatchers[n] = () => undefined;
  for (let i = n - 1; i >= 0; i--) {
    const stage = stages[i]!;
    const following = dispatchers[i + 1]!;
    // The same one closure per call as before: `other` costs a nullish check, no allocation.
    dispatchers[i] = (ctx) => stage.handle(ctx, (other) => following(other ?? ctx));
  }
  return dispatchers[0]!;
}
