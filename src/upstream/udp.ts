// UDP exchange with upstreams: a small pool of sockets on random ports, rotated after a number
// of queries, random IDs, and replies accepted only from the address, port, ID and question asked.

import dgram from 'node:dgram';
import { randomBelow, randomU16 } from './random.js';
import type { Counter, Metrics } from '../metrics/metrics.js';

/** Decides whether a reply that came from the right place is the one we wait for. */
export type Accept<T> = (reply: Buffer) => T | null;

interface Pending {
  host: string;
  port: number;
  accept: Accept<unknown>;
  resolve: (v: unknown) => void;
  timer: NodeJS.Timeout;
}

interface PooledSocket {
  kind: 'udp4' | 'udp6';
  socket: dgram.Socket;
  pending: Map<number, Pending>;
  uses: number;
  retired: boolean;
}

export interface UdpExchangeOptions {
  socketsPerFamily: number;
  /** Queries a socket carries before it is replaced by one on a new random port. */
  usesPerSocket: number;
}

export class UdpExchange {
  private readonly pools: Record<'udp4' | 'udp6', PooledSocket[]> = { udp4: [], udp6: [] };
  private closed = false;
  private readonly ignored: Counter;
  private readonly wrongSource: Counter;
  private readonly sendErrors: Counter;

  constructor(
    metrics: Metrics,
    private readonly opts: UdpExchangeOptions = { socketsPerFamily: 8, usesPerSocket: 2000 },
  ) {
    this.ignored = metrics.counter('upstream_replies_ignored_total', 'upstream replies dropped: malformed, wrong ID or question, late');
    this.wrongSource = metrics.counter('upstream_replies_wrong_source_total', 'upstream replies from an address or port we did not ask');
    this.sendErrors = metrics.counter('upstream_send_errors_total', 'upstream UDP sends that failed');
  }

  private open(kind: 'udp4' | 'udp6'): PooledSocket {
    const socket = dgram.createSocket({ type: kind });
    const ps: PooledSocket = { kind, socket, pending: new Map(), uses: 0, retired: false };
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
      accepted = p.accept(msg);
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
    clearTimeout(p.timer);
    ps.pending.delete(id);
    if (ps.retired && ps.pending.size === 0) this.closeSocket(ps);
    p.resolve(value);
  }

  /**
   * Sends `query` (its ID is overwritten) to host:port and resolves with what `accept` made of
   * the first acceptable reply, or null on timeout or send failure.
   */
  query<T>(query: Buffer, host: string, port: number, timeoutMs: number, accept: Accept<T>): Promise<T | null> {
    if (this.closed) return Promise.resolve(null);
    // Upstream hosts are IP literals (config checks it): a colon means IPv6, without the regex of isIPv6.
    const ps = this.pick(host.includes(':') ? 'udp6' : 'udp4');
    let id = randomU16();
    for (let tries = 0; ps.pending.has(id) && tries < 16; tries++) id = randomU16();
    if (ps.pending.has(id)) return Promise.resolve(null);
    query.writeUInt16BE(id, 0);
    ps.uses++;
    return new Promise<T | null>((resolve) => {
      const p: Pending = {
        host,
        port,
        accept,
        resolve: resolve as (v: unknown) => void,
        timer: setTimeout(() => this.finish(ps, id, p, null), timeoutMs),
      };
      ps.pending.set(id, p);
      ps.socket.send(query, port, host, (err) => {
        if (err && ps.pending.get(id) === p) {
          this.sendErrors.value++;
          this.finish(ps, id, p, null);
        }
      });
    });
  }

  close(): void {
    this.closed = true;
    for (const kind of ['udp4', 'udp6'] as const) {
      for (const ps of this.pools[kind]) {
        for (const [id, p] of ps.pending) this.finish(ps, id, p, null);
        this.closeSocket(ps);
      }
      this.pools[kind] = [];
    }
  }
}
