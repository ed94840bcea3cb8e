// Stream transports to upstreams (TCP, and DNS over TLS, RFC 7858): per upstream a small pool of
// persistent connections, each carrying many queries at once, replies matched by ID (RFC 7766);
// what was in flight on a connection the server closes is re-sent once on a new one.

import { createHash, type X509Certificate } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { frame } from '../../lib/dns/framing.js';
import type { Logger } from '../../lib/logger.js';
import type { Counter, Metrics } from '../../lib/metrics.js';
import { formatHostPort } from '../../lib/net/address.js';
import type { UpstreamConfig } from '../../config/types.js';
import { randomU16 } from './random.js';
import type { Failure, Waiter } from './udp.js';

export interface StreamOptions {
  /** Connections per upstream at most; a query finding them all full fails at once (the Job fails over). */
  readonly maxConnections: number;
  /** Queries in flight on one connection before another is opened. */
  readonly maxInFlight: number;
  /** A connection with nothing in flight is closed after this long. */
  readonly idleMs: number;
}

/**
 * Unbound keeps up to 10 outgoing TCP streams in all; dnsdist pipelines up to 100 queries per
 * downstream connection. 4 x 128 per upstream covers a burst of TC retries and leaves a dead
 * upstream few descriptors to hold.
 */
export const DEFAULT_STREAM_OPTIONS: StreamOptions = { maxConnections: 4, maxInFlight: 128, idleMs: 10_000 };

/** How often one upstream's connection failures (a pin mismatch among them) are logged at most. */
const LOG_EVERY_MS = 60_000;

interface Entry {
  /** The connection it is in flight on (another one once re-sent). */
  conn: Connection;
  id: number;
  readonly waiter: Waiter<unknown>;
  /** The query as written, kept so that it can be re-sent (with a new ID) if its connection closes. */
  readonly framed: Buffer;
  sentAt: number;
  /** Re-sent once already: the next close under it fails it. */
  retried: boolean;
  timer: NodeJS.Timeout | null;
}

/** One stream to the upstream: its in-flight queries by ID and its partial frame. */
interface Connection {
  readonly pool: StreamPool;
  readonly socket: net.Socket;
  readonly pending: Map<number, Entry>;
  /** Frames written before the connection is ready (TLS: verified) go here, not to the wire. */
  queue: Buffer[] | null;
  /** The start of a frame split across chunks, or null. */
  partial: Buffer | null;
  /** No new queries: it timed out without a reply since, or is closing. */
  draining: boolean;
  closed: boolean;
  lastRead: number;
  sent: number;
  unknown: number;
  idle: NodeJS.Timeout | null;
}

interface Counters {
  opened: Counter;
  failed: Counter;
  full: Counter;
  reused: Counter;
  pinFailures: Counter;
  unknown: Counter;
  unusable: Counter;
  retried: Counter;
}

/**
 * SHA-256 of the certificate's SubjectPublicKeyInfo, base64: the form of RFC 7858 / stubby pins.
 * Not PeerCertificate.pubkey: for an EC key that is the bare point, not the SPKI.
 */
export function spkiPin(cert: X509Certificate | undefined): string | null {
  if (cert === undefined) return null;
  return createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

function onTimeout(e: Entry): void {
  e.timer = null;
  const c = e.conn;
  if (c.pending.get(e.id) !== e) return;
  c.pending.delete(e.id);
  // Nothing read since this query was sent: the stream may be stuck; send no more on it.
  if (c.lastRead < e.sentAt) c.draining = true;
  c.pool.settle(c);
  e.waiter.done(null, 'timeout');
}

/** The connections of one upstream (TCP or TLS, as its config says). */
export class StreamPool {
  private readonly conns: Connection[] = [];
  private session: Buffer | undefined;
  private loggedAt = -Infinity;
  private quiet = 0;
  private closed = false;
  /**
   * Connections in a row that carried queries and closed before the server sent a byte: at the
   * second, what was in flight is not re-sent (a server that closes every connection is failing).
   */
  private silentCloses = 0;
  readonly label: string;

  constructor(
    readonly config: UpstreamConfig,
    private readonly opts: StreamOptions,
    private readonly counters: Counters,
    private readonly logger: Logger | null,
  ) {
    this.label = `${formatHostPort(config.host, config.port)}/${config.protocol === 'tls' ? 'tls' : 'tcp'}`;
  }

  /**
   * Sends `query` (its ID is overwritten with one unique on the connection) and calls the
   * waiter's done() exactly once: with what accept() made of the reply, or null and why.
   */
  send<T>(query: Buffer, timeoutMs: number, waiter: Waiter<T>): void {
    const c = this.closed ? null : this.pick();
    if (c === null) {
      if (!this.closed) this.counters.full.value++;
      waiter.done(null, 'error');
      return;
    }
    const id = freeId(c);
    if (id < 0) {
      waiter.done(null, 'error');
      return;
    }
    query.writeUInt16BE(id, 0);
    const e: Entry = { conn: c, id, waiter: waiter as Waiter<unknown>, framed: frame(query), sentAt: performance.now(), retried: false, timer: null };
    e.timer = setTimeout(onTimeout, timeoutMs, e);
    this.put(c, e);
  }

  private put(c: Connection, e: Entry): void {
    c.pending.set(e.id, e);
    c.sent++;
    if (c.sent > 1) this.counters.reused.value++;
    if (c.queue !== null) c.queue.push(e.framed);
    else c.socket.write(e.framed);
  }

  /**
   * Puts `e`, whose connection closed under it, on `to` (a connection opened for the re-sent
   * queries of that close) or, when that is null or full, on a new one; the timer it has keeps
   * running, so the attempt ends when it would have. The connection used, or null when none had room.
   */
  private resend(e: Entry, to: Connection | null): Connection | null {
    // A new connection rather than another open one: a restarting server closes those too.
    let c = to !== null && !to.closed && !to.draining && to.pending.size < this.opts.maxInFlight ? to : null;
    if (c === null) c = this.conns.length < this.opts.maxConnections ? this.open() : this.pick();
    if (c === null) return null;
    const id = freeId(c);
    if (id < 0) return null;
    e.conn = c;
    e.id = id;
    e.retried = true;
    e.sentAt = performance.now();
    e.framed.writeUInt16BE(id, 2);
    this.counters.retried.value++;
    this.put(c, e);
    return c;
  }

  /** The first connection with room (filling one before opening the next), or a new one. */
  private pick(): Connection | null {
    for (let i = 0; i < this.conns.length; i++) {
      const c = this.conns[i]!;
      if (!c.draining && c.pending.size < this.opts.maxInFlight) return c;
    }
    if (this.conns.length >= this.opts.maxConnections) return null;
    return this.open();
  }

  private open(): Connection {
    const cfg = this.config;
    const t = cfg.tls;
    let socket: net.Socket;
    if (cfg.protocol === 'tls' && t !== undefined) {
      const name = t.servername;
      socket = tls.connect({
        host: cfg.host,
        port: cfg.port,
        // Without a servername only the pin vouches for the server (checked on secureConnect).
        rejectUnauthorized: name !== null,
        // SNI carries host names only (RFC 6066); an IP servername is checked against IP SANs.
        ...(name === null ? {} : net.isIP(name) ? { checkServerIdentity: (_: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(name, cert) } : { servername: name }),
        ...(t.ca === null ? {} : { ca: t.ca }),
        session: this.session,
      });
    } else {
      socket = net.connect({ host: cfg.host, port: cfg.port });
    }
    socket.setNoDelay(true);
    const c: Connection = {
      pool: this,
      socket,
      pending: new Map(),
      queue: [],
      partial: null,
      draining: false,
      closed: false,
      lastRead: 0,
      sent: 0,
      unknown: 0,
      idle: null,
    };
    this.conns.push(c);
    this.counters.opened.value++;
    if (socket instanceof tls.TLSSocket) {
      socket.on('session', (s: Buffer) => {
        this.session = s;
      });
      socket.on('secureConnect', () => this.verified(c, socket as tls.TLSSocket));
    } else socket.on('connect', () => this.ready(c));
    socket.on('data', (chunk: Buffer) => this.read(c, chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.broken(c, err.code ?? err.message));
    socket.on('close', () => this.drop(c, 'error'));
    return c;
  }

  private verified(c: Connection, socket: tls.TLSSocket): void {
    const t = this.config.tls!;
    if (t.pins.length > 0) {
      const pin = spkiPin(socket.getPeerX509Certificate());
      // A resumed session proves the server holds the session a pinned handshake made.
      if (pin === null ? !socket.isSessionReused() : !t.pins.includes(pin)) {
        this.counters.pinFailures.value++;
        this.session = undefined;
        this.log(`certificate key pin mismatch (server key sha256/${pin ?? '?'}, expected one of ${t.pins.map((p) => `sha256/${p}`).join(', ')})`);
        return this.drop(c, 'error');
      }
    }
    this.ready(c);
  }

  private ready(c: Connection): void {
    const q = c.queue;
    c.queue = null;
    if (c.closed || q === null || q.length === 0) return;
    c.socket.cork();
    for (let i = 0; i < q.length; i++) c.socket.write(q[i]!);
    c.socket.uncork();
  }

  private read(c: Connection, chunk: Buffer): void {
    c.lastRead = performance.now();
    this.silentCloses = 0;
    let buf = c.partial === null ? chunk : Buffer.concat([c.partial, chunk]);
    c.partial = null;
    let at = 0;
    while (!c.closed && buf.length - at >= 2) {
      const len = buf.readUInt16BE(at);
      if (buf.length - at - 2 < len) break;
      const msg = buf.subarray(at + 2, at + 2 + len);
      at += 2 + len;
      const e = len >= 12 ? c.pending.get(msg.readUInt16BE(0)) : undefined;
      if (e === undefined) {
        this.counters.unknown.value++;
        // Each query gets one reply at most, late ones included: more frames than queries
        // sent is a stream out of step with us (or hostile), not worth reading further.
        if (++c.unknown > c.sent) return this.drop(c, 'unusable');
        continue;
      }
      c.pending.delete(e.id);
      clearTimeout(e.timer!);
      e.timer = null;
      let got: unknown = null;
      try {
        got = e.waiter.accept(msg);
      } catch {
        got = null;
      }
      // Our ID on our own connection: an unusable frame is the upstream's, the query ends now.
      if (got === null) this.counters.unusable.value++;
      this.settle(c);
      e.waiter.done(got, got === null ? 'unusable' : undefined);
    }
    // A frame is at most 65,537 octets: that bounds what is kept between chunks.
    if (!c.closed && at < buf.length) c.partial = buf.subarray(at);
  }

  /** After a query left the connection: arm the idle timer, or close a draining one now empty. */
  settle(c: Connection): void {
    if (c.pending.size !== 0 || c.closed) return;
    if (c.draining) return this.drop(c, 'error');
    if (c.idle === null) {
      c.idle = setTimeout(() => {
        if (c.pending.size === 0) this.drop(c, 'error');
      }, this.opts.idleMs);
      c.idle.unref();
    } else c.idle.refresh();
  }

  private broken(c: Connection, why: string): void {
    if (c.closed) return;
    if (c.sent === 0 || c.lastRead === 0) this.log(`connection failed: ${why}`);
    this.drop(c, 'error');
  }

  /**
   * Closes the connection. What was in flight on it is re-sent on a new connection when the
   * server closed or reset it (RFC 7766 6.2.4: a server may close one at any time, for an idle
   * limit, a restart or a cap on queries per connection), once per query and within its time.
   * Not re-sent, failed instead (the Jobs fail over): queries already re-sent once, those of a
   * connection that never became usable (refused, TLS verification, pin), of the second
   * connection in a row closed before any reply, of one out of step with us, or of a closed pool.
   * The failure is reported with the first failed query and 'dropped' with the others, so the
   * Job counts one failed connection once against the upstream, not once per query on it.
   */
  private drop(c: Connection, failure: Failure): void {
    if (c.closed) return;
    c.closed = true;
    if (c.lastRead === 0 && c.sent > 0) this.counters.failed.value++;
    // queue is null once the connection was ready (TLS: verified) and queries went out on it.
    const usable = c.queue === null;
    if (usable && c.lastRead === 0 && c.sent > 0) this.silentCloses++;
    const retry = failure === 'error' && usable && !this.closed && this.silentCloses < 2;
    if (c.idle !== null) clearTimeout(c.idle);
    c.socket.destroy();
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
    if (c.pending.size === 0) return;
    const entries = [...c.pending.values()];
    c.pending.clear();
    let to: Connection | null = null;
    let reported = false;
    for (const e of entries) {
      if (retry && !e.retried && e.timer !== null) {
        const next = this.resend(e, to);
        if (next !== null) {
          to = next;
          continue;
        }
      }
      if (e.timer !== null) clearTimeout(e.timer);
      e.timer = null;
      e.waiter.done(null, reported ? 'dropped' : failure);
      reported = true;
    }
  }

  /** Rate-limited per upstream: a broken or mis-pinned server would else log once per query. */
  private log(msg: string): void {
    if (this.logger === null) return;
    const now = performance.now();
    if (now - this.loggedAt < LOG_EVERY_MS) {
      this.quiet++;
      return;
    }
    this.logger.warn({ upstream: this.label, ...(this.quiet > 0 ? { suppressed: this.quiet } : {}) }, `upstream ${msg}`);
    this.loggedAt = now;
    this.quiet = 0;
  }

  close(): void {
    this.closed = true;
    for (const c of [...this.conns]) this.drop(c, 'error');
  }
}

/** An ID no query in flight on `c` has, or -1. */
function freeId(c: Connection): number {
  let id = randomU16();
  // At most maxInFlight IDs are taken out of 65,536: a free one is found in a few draws.
  for (let i = 0; c.pending.has(id); i++) {
    if (i >= 64) return -1;
    id = randomU16();
  }
  return id;
}

/** Whether two upstream entries name the same server the same way (a reload keeps its state and pools then). */
export function sameUpstream(a: UpstreamConfig, b: UpstreamConfig): boolean {
  if (a.host !== b.host || a.port !== b.port || a.protocol !== b.protocol) return false;
  const x = a.tls;
  const y = b.tls;
  if (x === undefined || y === undefined) return x === y;
  return x.servername === y.servername && x.ca === y.ca && x.pins.length === y.pins.length && x.pins.every((p, k) => p === y.pins[k]);
}

/** The stream pools of one forward stage, one per upstream config, made on first use. */
export class StreamExchange {
  private readonly pools = new Map<UpstreamConfig, StreamPool>();
  private readonly counters: Counters;

  constructor(
    metrics: Metrics,
    private readonly logger: Logger | null,
    private readonly opts: StreamOptions = DEFAULT_STREAM_OPTIONS,
  ) {
    this.counters = {
      opened: metrics.counter('upstream_stream_connections_total', 'TCP and TLS connections opened to upstreams'),
      failed: metrics.counter('upstream_stream_connect_failures_total', 'upstream TCP/TLS connections that closed before any reply (refused, TLS verification, pin)'),
      full: metrics.counter('upstream_stream_full_total', 'TCP/TLS attempts failed at once: every connection of the upstream had its maximum in flight'),
      reused: metrics.counter('upstream_stream_reused_total', 'TCP/TLS queries sent on a connection that carried one before'),
      pinFailures: metrics.counter('upstream_tls_pin_failures_total', 'TLS connections closed because the server key matched no pin'),
      unknown: metrics.counter('upstream_stream_frames_ignored_total', 'TCP/TLS frames with no query of that ID in flight (late, or not ours)'),
      unusable: metrics.counter('upstream_stream_frames_unusable_total', 'TCP/TLS frames with a pending ID that failed the reply checks'),
      retried: metrics.counter('upstream_stream_retries_total', 'TCP/TLS queries re-sent on a new connection: the server closed theirs before answering (RFC 7766 6.2.4)'),
    };
  }

  /** The pool for `config` (TCP for "udp" and "tcp" upstreams, TLS for "tls"). */
  pool(config: UpstreamConfig): StreamPool {
    let p = this.pools.get(config);
    if (p === undefined) {
      p = new StreamPool(config, this.opts, this.counters, this.logger);
      this.pools.set(config, p);
    }
    return p;
  }

  send<T>(config: UpstreamConfig, query: Buffer, timeoutMs: number, waiter: Waiter<T>): void {
    this.pool(config).send(query, timeoutMs, waiter);
  }

  /** Closes the pools of upstreams no longer in `keep` (a reload removed them). */
  retain(keep: readonly UpstreamConfig[]): void {
    for (const [config, p] of this.pools) {
      if (keep.includes(config)) continue;
      p.close();
      this.pools.delete(config);
    }
  }

  close(): void {
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }
}
