// UDP exchange with upstreams: a small pool of sockets on random ports, rotated after a number
// of queries, random IDs, and replies accepted only from the address, port, ID and question asked.

import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import { randomBelow, randomU16 } from './random.js';
import type { Counter, Metrics } from '../metrics/metrics.js';
import { literalLookup } from '../net/literal-lookup.js';

/** Decides whether a reply that came from the right place is the one we wait for. */
export type Accept<T> = (reply: Buffer) => T | null;

/**
 * One query's side of an exchange: `accept` judges each reply from the right address and ID,
 * `done` gets the first accepted one, or null on timeout. An object rather than two closures,
 * so a forwarded query allocates no functions here.
 */
export interface Waiter<T> {
  accept(reply: Buffer): T | null;
  done(result: T | null): void;
}

interface Pending {
  host: string;
  port: number;
  waiter: Waiter<unknown>;
  /** performance.now() after which the query has timed out. */
  deadline: number;
}

interface PooledSocket {
  kind: 'udp4' | 'udp6';
  socket: dgram.Socket;
  pending: Map<number, Pending>;
  uses: number;
  retired: boolean;
}

/**
 * Timeouts are found by a sweep every SWEEP_MS while queries are pending, not by a timer per
 * query: a Timeout object, its list insertion and removal cost more than the sweep does at load.
 */
const SWEEP_MS = 10;

export interface UdpExchangeOptions {
  /**
   * Open sockets per address family. Two measured faster than eight on misses (more replies
   * read per wake-up) and cost nothing against spoofing: a forged reply must still match a
   * pending ID on the port it hits, so the odds depend on how many queries are pending, not
   * on how many sockets hold them. Rotation is what keeps ports unpredictable.
   */
  socketsPerFamily: number;
  /** Queries a socket carries before it is replaced by one on a new random port. */
  usesPerSocket: number;
}

export class UdpExchange {
  private readonly pools: Record<'udp4' | 'udp6', PooledSocket[]> = { udp4: [], udp6: [] };
  /** Every open socket, pooled or retired with replies still due: what the sweep visits. */
  private readonly sockets = new Set<PooledSocket>();
  private pendingCount = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  /** One callback for every send: a failure is counted, and the query then times out. */
  private readonly onSent = (err: Error | null): void => {
    if (err) this.sendErrors.value++;
  };
  private readonly ignored: Counter;
  private readonly wrongSource: Counter;
  private readonly sendErrors: Counter;

  constructor(
    metrics: Metrics,
    private readonly opts: UdpExchangeOptions = { socketsPerFamily: 2, usesPerSocket: 2000 },
  ) {
    this.ignored = metrics.counter('upstream_replies_ignored_total', 'upstream replies dropped: malformed, wrong ID or question, late');
    this.wrongSource = metrics.counter('upstream_replies_wrong_source_total', 'upstream replies from an address or port we did not ask');
    this.sendErrors = metrics.counter('upstream_send_errors_total', 'upstream UDP sends that failed');
  }

  private open(kind: 'udp4' | 'udp6'): PooledSocket {
    const socket = dgram.createSocket({ type: kind, lookup: literalLookup });
    const ps: PooledSocket = { kind, socket, pending: new Map(), uses: 0, retired: false };
    this.sockets.add(ps);
    socket.on('message', (msg, rinfo) => this.onMessage(ps, msg, rinfo));
    socket.on('error', () => this.retire(ps));
    // exclusive: under --workers, cluster would otherwise share one upstream socket between
    // workers, and a reply would reach whichever worker read it first.
    socket.bind({ port: 0, exclusive: true });
    return ps;
  }

  private pick(kind: 'udp4' | 'udp6'): PooledSocket {
    const pool = this.pools[kind];
    if (pool.length < this.opts.socketsPerFamily) {
      const ps = this.open(kind);
      pool.push(ps);
      return ps;
    }
    let ps = pool[randomBelow(pool.length)]!;
    if (ps.uses >= this.opts.usesPerSocket) {
      this.retire(ps); // takes it out of the pool; it closes once its last reply is in
      ps = this.open(kind);
      pool.push(ps);
    }
    return ps;
  }

  private retire(ps: PooledSocket): void {
    if (ps.retired) return;
    ps.retired = true;
    const pool = this.pools[ps.kind];
    const i = pool.indexOf(ps);
    if (i >= 0) pool.splice(i, 1);
    if (ps.pending.size === 0) this.closeSocket(ps);
  }

  private closeSocket(ps: PooledSocket): void {
    this.sockets.delete(ps);
    try {
      ps.socket.close();
    } catch {
      // already closed
    }
  }

  private onMessage(ps: PooledSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) {
      this.ignored.value++;
      return;
    }
    const p = ps.pending.get(msg.readUInt16BE(0));
    if (p === undefined) {
      this.ignored.value++;
      return;
    }
    if (rinfo.address !== p.host || rinfo.port !== p.port) {
      this.wrongSource.value++;
      return;
    }
    let accepted: unknown = null;
    try {
      accepted = p.waiter.accept(msg);
    } catch {
      accepted = null;
    }
    // A reply that fails validation is ignored and the real one may still come (RFC 5452).
    if (accepted === null) {
      this.ignored.value++;
      return;
    }
    this.finish(ps, msg.readUInt16BE(0), p, accepted);
  }

  private finish(ps: PooledSocket, id: number, p: Pending, value: unknown): void {
    ps.pending.delete(id);
    this.pendingCount--;
    if (ps.retired && ps.pending.size === 0) this.closeSocket(ps);
    p.waiter.done(value);
  }

  private sweep(): void {
    const now = performance.now();
    for (const ps of this.sockets) {
      for (const [id, p] of ps.pending) if (p.deadline <= now) this.finish(ps, id, p, null);
    }
    if (this.pendingCount === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /**
   * Sends `query` (its ID is overwritten) to host:port; `waiter.done` is called once, with what
   * `waiter.accept` made of the first acceptable reply, or with null on timeout.
   */
  send<T>(query: Buffer, host: string, port: number, timeoutMs: number, waiter: Waiter<T>): void {
    if (this.closed) {
      waiter.done(null);
      return;
    }
    // Upstream hosts are IP literals (config checks it): a colon means IPv6, without the regex of isIPv6.
    const ps = this.pick(host.includes(':') ? 'udp6' : 'udp4');
    let id = randomU16();
    for (let tries = 0; ps.pending.get(id) !== undefined; tries++) {
      if (tries === 16) {
        waiter.done(null);
        return;
      }
      id = randomU16();
    }
    query.writeUInt16BE(id, 0);
    ps.uses++;
    ps.pending.set(id, { host, port, waiter: waiter as Waiter<unknown>, deadline: performance.now() + timeoutMs });
    this.pendingCount++;
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
    ps.socket.send(query, port, host, this.onSent);
  }

  /** send() as a promise, with `accept` as a function: for callers off the hot path. */
  query<T>(query: Buffer, host: string, port: number, timeoutMs: number, accept: Accept<T>): Promise<T | null> {
    return new Promise<T | null>((resolve) => this.send(query, host, port, timeoutMs, { accept, done: resolve }));
  }

  close(): void {
    this.closed = true;
    this.pools.udp4 = [];
    this.pools.udp6 = [];
    // `sockets` holds the pooled ones as well as the retired ones still owed replies.
    for (const ps of [...this.sockets]) {
      for (const [id, p] of ps.pending) this.finish(ps, id, p, null);
      this.closeSocket(ps);
    }
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
