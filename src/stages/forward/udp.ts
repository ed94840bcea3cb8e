// UDP exchange with upstreams: per upstream, a large pool of connected sockets on random ports,
// replaced often, with CSPRNG IDs; replies count only from the address, port and ID asked.

import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import { randomBelow, randomU16 } from './random.js';
import type { Counter, Metrics } from '../../lib/metrics.js';
import { literalLookup } from '../../lib/net/literal-lookup.js';
import type { Logger } from '../../lib/logger.js';

/** Decides whether a reply that came from the right place is the one we wait for. */
export type Accept<T> = (reply: Buffer) => T | null;

/**
 * Why an attempt failed. 'unreachable' is an ICMP unreachable (or a routing error) on a connected
 * socket: anyone off-path who hits the socket's address and port pair can forge one. 'dropped':
 * a TCP/TLS connection failed under several queries, and another of them reports it (with
 * 'error' or 'unusable'), so that one failed connection counts once against its upstream.
 */
export type Failure = 'timeout' | 'unusable' | 'unreachable' | 'error' | 'dropped';

/**
 * One query's side of an exchange: `accept` judges the reply from the right address, port and
 * ID, `done` gets what it made of it, or null and why when the attempt failed. An object rather
 * than two closures, so a forwarded query allocates no functions here.
 */
export interface Waiter<T> {
  accept(reply: Buffer): T | null;
  done(result: T | null, failure?: Failure): void;
}

interface Pending {
  ps: PooledSocket;
  id: number;
  waiter: Waiter<unknown>;
  /** performance.now() after which the query has timed out. */
  deadline: number;
}

interface PooledSocket {
  lane: UdpUpstream;
  socket: dgram.Socket;
  pending: Map<number, Pending>;
  uses: number;
  /** performance.now() at open: a socket is replaced when it gets old, even when idle. */
  born: number;
  retired: boolean;
  /** Queries waiting for `connect` (only when dgram connects asynchronously); null once connected. */
  queued: Buffer[] | null;
  /** The send callback of this socket: a send error fails what is pending on it. */
  onSent: (err: Error | null) => void;
}

/** The sockets of one upstream (host and port): they are connected to it, so none is shared. */
export interface UdpUpstream {
  readonly host: string;
  readonly port: number;
  readonly kind: 'udp4' | 'udp6';
  readonly sockets: PooledSocket[];
  /** How many sockets the pool may hold; lowered when the process runs out of descriptors. */
  size: number;
  /** performance.now() after which a lowered `size` goes back up (the shortage may be over). */
  regrowAt: number;
  /** performance.now() of the last warning that the pool shrank. */
  warnedAt: number;
  dropped: boolean;
}

/**
 * Timeouts are found by a sweep every SWEEP_MS while queries are pending, not by a timer per
 * query: a Timeout object, its list insertion and removal cost more than the sweep does at load.
 */
const SWEEP_MS = 10;

/** Errors on a connected socket that mean the upstream cannot be reached (ICMP, routing). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENETUNREACH', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETDOWN', 'EADDRNOTAVAIL', 'ECONNRESET']);

export interface UdpExchangeOptions {
  /**
   * Sockets (source ports) per upstream. Each query picks one at random, so an off-path forger
   * must cover ports x IDs: 1024 x 65536 = 2^26 even for one who knows every port in the pool
   * (docs/security.md). The pool fills lazily: until it is full every query opens a new socket.
   */
  portsPerUpstream: number;
  /** Queries a socket carries before it is replaced by one on a new random port. */
  usesPerSocket: number;
  /** Milliseconds after which a socket is replaced at its next use, however little it carried. */
  maxSocketAgeMs: number;
  /**
   * Milliseconds after running out of descriptors (EMFILE, ENFILE) until a pool shrunk by it
   * may grow back to portsPerUpstream; 10 s when not given. Without it a minute of descriptor
   * pressure would leave an upstream a handful of ports for the life of the process.
   */
  regrowAfterMs?: number;
}

const REGROW_AFTER_MS = 10_000;
/** At most one warning per upstream this often that its pool shrank. */
const SHRINK_WARN_MS = 10_000;

/**
 * Why a pool and not a fresh socket per query as Unbound does: bench/socket-cost.ts measured a
 * socket's open, connect and close at 11-24 µs of CPU, against ~2 µs more per query for a pool
 * of 1024 connected sockets than for the old two; a socket per query would cost 15-40% of miss
 * throughput. Why 512 uses: same-run `npm run bench` A/Bs of the miss workload put replacing
 * every 64 queries at 8% of miss throughput and the spread over 1024 sockets itself at ~18%
 * (libuv reads each socket until EAGAIN: one more recvmsg and wake-up per reply, no batching);
 * at 512 the churn is an eighth of that, and a port still carries at most 512 queries or 60 s.
 */
export const DEFAULT_UDP_OPTIONS: UdpExchangeOptions = { portsPerUpstream: 1024, usesPerSocket: 512, maxSocketAgeMs: 60_000 };

export class UdpExchange {
  private readonly lanes = new Map<string, UdpUpstream>();
  /** Every open socket, pooled or retired with replies still due. */
  private readonly sockets = new Set<PooledSocket>();
  /**
   * Queries pending over all sockets. Not a Set of them: adding each new query to a long-lived
   * Set cost ~15% of miss CPU in an A/B (old-to-new pointers for the scavenger); the sweep
   * visits the sockets instead, most of them with nothing pending.
   */
  private pendingCount = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly ignored: Counter;
  private readonly unusable: Counter;
  private readonly wrongSource: Counter;
  private readonly sendErrors: Counter;
  private readonly unreachable: Counter;
  private readonly socketErrors: Counter;
  private readonly regrowAfterMs: number;

  constructor(
    metrics: Metrics,
    private opts: UdpExchangeOptions = DEFAULT_UDP_OPTIONS,
    private readonly logger: Logger | null = null,
  ) {
    this.regrowAfterMs = opts.regrowAfterMs ?? REGROW_AFTER_MS;
    this.ignored = metrics.counter('upstream_replies_ignored_total', 'upstream replies dropped: too short, wrong ID, late');
    this.unusable = metrics.counter('upstream_replies_unusable_total', 'upstream replies with the right source and ID that failed validation: the attempt ends at once');
    this.wrongSource = metrics.counter('upstream_replies_wrong_source_total', 'upstream replies from an address or port we did not ask');
    this.sendErrors = metrics.counter('upstream_send_errors_total', 'upstream UDP sends that failed');
    this.unreachable = metrics.counter('upstream_unreachable_total', 'ICMP unreachable (or a routing error) reported on an upstream socket');
    this.socketErrors = metrics.counter('upstream_socket_errors_total', 'upstream sockets that could not be opened or failed');
  }

  /** The pool for host:port, created on first use. Callers keep it: send() takes it, not a key. */
  upstream(host: string, port: number): UdpUpstream {
    const key = `${host}|${port}`;
    let lane = this.lanes.get(key);
    if (lane === undefined || lane.dropped) {
      // Upstream hosts are IP literals (config checks it): a colon means IPv6.
      lane = { host, port, kind: host.includes(':') ? 'udp6' : 'udp4', sockets: [], size: this.opts.portsPerUpstream, regrowAt: 0, warnedAt: -Infinity, dropped: false };
      this.lanes.set(key, lane);
    }
    return lane;
  }

  /** Closes an upstream's sockets (each once its last reply is in): it left the config. */
  drop(lane: UdpUpstream): void {
    lane.dropped = true;
    if (this.lanes.get(`${lane.host}|${lane.port}`) === lane) this.lanes.delete(`${lane.host}|${lane.port}`);
    for (const ps of [...lane.sockets]) this.retire(ps);
  }

  /** A new socket bound to a random port and connected to the upstream; null if it failed. */
  private open(lane: UdpUpstream, now: number): PooledSocket | null {
    const socket = dgram.createSocket({ type: lane.kind, lookup: literalLookup });
    const ps: PooledSocket = { lane, socket, pending: new Map(), uses: 0, born: now, retired: false, queued: null, onSent: () => undefined };
    ps.onSent = (err) => {
      if (err) this.failSocket(ps, err, true);
    };
    this.sockets.add(ps);
    socket.on('message', (msg, rinfo) => this.onMessage(ps, msg, rinfo));
    // Connected, the socket hears ICMP unreachable as ECONNREFUSED here (unconnected, nothing).
    socket.on('error', (err) => this.failSocket(ps, err, false));
    try {
      // exclusive: under --workers, cluster would otherwise share one upstream socket between
      // workers, and a reply would reach whichever worker read it first. Port 0: the kernel
      // picks a random free port from the ephemeral range (ip_local_port_range).
      socket.bind({ port: 0, exclusive: true });
      // A failed bind (EMFILE: the descriptor is made here) emits 'error' synchronously, and
      // failSocket has counted and retired it; connect on the closed socket would only throw.
      if (ps.retired) return null;
      socket.connect(lane.port, lane.host);
    } catch (err) {
      this.socketErrors.value++;
      this.shrink(lane, lane.sockets.length, now, (err as NodeJS.ErrnoException).code ?? String(err));
      this.retire(ps);
      return null;
    }
    // With a literal lookup dgram binds and connects synchronously; should a Node version defer
    // it, sends wait for 'connect' rather than throw (send without an address needs a peer).
    // A connect that failed (ENETUNREACH, EINVAL, EACCES) lands here too: dgram does not throw
    // but emits 'error' on the next tick, and failSocket retires the socket then.
    try {
      socket.remoteAddress();
    } catch {
      ps.queued = [];
      socket.once('connect', () => {
        const q = ps.queued ?? [];
        ps.queued = null;
        for (const b of q) socket.send(b, ps.onSent);
      });
    }
    return ps;
  }

  /**
   * A reload changed the pool size: pools grow on demand as before; sockets beyond a smaller
   * size are retired now (each closes once its last reply is in).
   */
  setPortsPerUpstream(ports: number): void {
    if (ports === this.opts.portsPerUpstream) return;
    this.opts = { ...this.opts, portsPerUpstream: ports };
    for (const lane of this.lanes.values()) {
      lane.size = Math.min(lane.size, ports);
      while (lane.sockets.length > ports) this.retire(lane.sockets[lane.sockets.length - 1]!);
    }
  }

  private pick(lane: UdpUpstream, now: number): PooledSocket | null {
    const pool = lane.sockets;
    if (lane.size < this.opts.portsPerUpstream && now >= lane.regrowAt) lane.size = this.opts.portsPerUpstream;
    if (pool.length < lane.size) {
      const ps = this.open(lane, now);
      if (ps !== null) pool.push(ps);
      return ps;
    }
    const i = randomBelow(pool.length);
    const ps = pool[i]!;
    if (ps.uses < this.opts.usesPerSocket && now - ps.born < this.opts.maxSocketAgeMs) return ps;
    // Replaced in place: the old one closes once its last reply is in.
    ps.retired = true;
    if (ps.pending.size === 0) this.closeSocket(ps);
    const fresh = this.open(lane, now);
    if (fresh === null) {
      pool[i] = pool[pool.length - 1]!;
      pool.pop();
      return null;
    }
    pool[i] = fresh;
    return fresh;
  }

  private retire(ps: PooledSocket): void {
    if (ps.retired) return;
    ps.retired = true;
    const pool = ps.lane.sockets;
    const i = pool.indexOf(ps);
    if (i >= 0) {
      pool[i] = pool[pool.length - 1]!;
      pool.pop();
    }
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

  /**
   * A socket could not be opened (out of descriptors, mostly): the pool keeps the `size` it
   * reached until regrowAt, when pick() lets it grow again (the shortage may have been brief).
   * The operator hears of it, at most once per SHRINK_WARN_MS per upstream.
   */
  private shrink(lane: UdpUpstream, size: number, now: number, code: string): void {
    const before = lane.size;
    lane.size = Math.max(1, size);
    lane.regrowAt = now + this.regrowAfterMs;
    if (this.logger === null || lane.size >= before || now - lane.warnedAt < SHRINK_WARN_MS) return;
    lane.warnedAt = now;
    this.logger.warn(
      { upstream: `${lane.host}:${lane.port}`, code, size: lane.size, ports: this.opts.portsPerUpstream, regrowAfterMs: this.regrowAfterMs },
      'an upstream socket could not be opened: its pool shrunk for now (EMFILE: raise ulimit -n)',
    );
  }

  /**
   * An error on a socket fails what is pending on it at once: every query on it went to the
   * same upstream, so an ICMP unreachable (or a send error) speaks for all of them. A socket
   * that is broken otherwise (could not bind, or never connected) leaves the pool.
   */
  private failSocket(ps: PooledSocket, err: Error, fromSend: boolean): void {
    const e = err as NodeJS.ErrnoException;
    const code = e.code ?? '';
    if (fromSend) this.sendErrors.value++;
    // A socket whose connect failed (dgram reports it as 'error' with syscall 'connect') can
    // send nothing: kept in the pool, every query that picked it would wait out its timeout.
    const neverConnected = ps.queued !== null || e.syscall === 'connect';
    const unreachable = UNREACHABLE.has(code);
    if (unreachable) this.unreachable.value++;
    else this.socketErrors.value++;
    if (!unreachable || neverConnected) {
      // ps may not be in the pool yet.
      if (code === 'EMFILE' || code === 'ENFILE') this.shrink(ps.lane, ps.lane.sockets.filter((x) => x !== ps).length, performance.now(), code);
      this.retire(ps);
    }
    const failure: Failure = unreachable && !neverConnected ? 'unreachable' : 'error';
    for (const p of [...ps.pending.values()]) this.finish(p, null, failure);
  }

  private onMessage(ps: PooledSocket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 2) {
      this.ignored.value++;
      return;
    }
    const p = ps.pending.get(msg.readUInt16BE(0));
    if (p === undefined) {
      this.ignored.value++;
      return;
    }
    // The kernel delivers only the connected peer's datagrams, so no test can reach this (a
    // spoof from elsewhere is dropped before it: hostile-upstream.test.ts); it stays as defence
    // in depth, should a socket ever be left unconnected.
    if (rinfo.port !== ps.lane.port || rinfo.address !== ps.lane.host) {
      this.wrongSource.value++;
      return;
    }
    let accepted: unknown = null;
    try {
      accepted = p.waiter.accept(msg);
    } catch {
      accepted = null;
    }
    // A reply from the upstream's address and port with the pending ID is the upstream's own:
    // forging one means covering 2^26 port x ID pairs per query. So an unusable one ends the
    // attempt at once instead of waiting out the timeout for a better one (docs/security.md).
    if (accepted === null) {
      this.unusable.value++;
      this.finish(p, null, 'unusable');
    } else {
      this.finish(p, accepted);
    }
  }

  private finish(p: Pending, value: unknown, failure?: Failure): void {
    const ps = p.ps;
    if (ps.pending.get(p.id) !== p) return;
    ps.pending.delete(p.id);
    this.pendingCount--;
    if (ps.retired && ps.pending.size === 0) this.closeSocket(ps);
    p.waiter.done(value, failure);
  }

  private sweep(): void {
    const now = performance.now();
    for (const ps of this.sockets) {
      if (ps.pending.size === 0) continue;
      for (const p of ps.pending.values()) if (p.deadline <= now) this.finish(p, null, 'timeout');
    }
    if (this.pendingCount === 0 && this.sweeper !== null) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /**
   * Sends `query` (its ID is overwritten) to the upstream; `waiter.done` is called once, with
   * what `waiter.accept` made of the reply, or with null on timeout or failure.
   */
  send<T>(lane: UdpUpstream, query: Buffer, timeoutMs: number, waiter: Waiter<T>): void {
    if (this.closed || lane.dropped) {
      waiter.done(null, 'error');
      return;
    }
    const now = performance.now();
    const ps = this.pick(lane, now);
    if (ps === null) {
      // Counted once, where the socket failed to open.
      waiter.done(null, 'error');
      return;
    }
    let id = randomU16();
    for (let tries = 0; ps.pending.get(id) !== undefined; tries++) {
      if (tries === 16) {
        waiter.done(null, 'error');
        return;
      }
      id = randomU16();
    }
    query.writeUInt16BE(id, 0);
    ps.uses++;
    const p: Pending = { ps, id, waiter: waiter as Waiter<unknown>, deadline: now + timeoutMs };
    ps.pending.set(id, p);
    this.pendingCount++;
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
    if (ps.queued !== null) ps.queued.push(query);
    else ps.socket.send(query, ps.onSent);
  }

  /** send() as a promise, with `accept` as a function: for callers off the hot path. */
  query<T>(query: Buffer, host: string, port: number, timeoutMs: number, accept: Accept<T>): Promise<T | null> {
    return new Promise<T | null>((resolve) => this.send(this.upstream(host, port), query, timeoutMs, { accept, done: resolve }));
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) {
      lane.dropped = true;
      lane.sockets.length = 0;
    }
    this.lanes.clear();
    for (const ps of [...this.sockets]) {
      for (const p of [...ps.pending.values()]) this.finish(p, null, 'error');
      this.closeSocket(ps);
    }
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
