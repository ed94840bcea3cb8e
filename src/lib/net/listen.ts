// How the transports listen: socket errors always counted, logged at most once per interval and
// kind (with how many more there were), and the reusePort option of --workers workers.

import type { Logger } from '../logger.js';

/** One log line per kind of error (where, and its code) per this many milliseconds. */
export const SOCKET_ERROR_LOG_MS = 10_000;

export class SocketErrorLog {
  private readonly seen = new Map<string, { at: number; more: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = SOCKET_ERROR_LOG_MS,
    private readonly clock: () => number = Date.now,
  ) {}

  /** `where`: what failed ("udp send", "tcp connection"); `address`: the listen address. */
  report(where: string, address: string, err: unknown): void {
    const code = (err as NodeJS.ErrnoException | null)?.code ?? 'error';
    const kind = `${where} ${address} ${code}`;
    const now = this.clock();
    const s = this.seen.get(kind);
    if (s !== undefined && now - s.at < this.intervalMs) {
      s.more++;
      return;
    }
    const suppressed = s?.more ?? 0;
    this.seen.set(kind, { at: now, more: 0 });
    this.logger.warn({ where, address, code, err: (err as Error | null)?.message ?? String(err), suppressed }, `socket error (${where})${suppressed > 0 ? `; ${suppressed} more like it not logged` : ''}`);
  }
}

/**
 * Binding options for a listen socket: with `reusePort` (Node >= 22.12, one socket per --workers
 * worker) the kernel spreads queries across the workers' sockets; `exclusive` keeps a cluster
 * worker's socket its own rather than the primary's shared one.
 */
export interface ListenOptions {
  reusePort?: boolean;
  errors?: SocketErrorLog;
}
