// TCP transport (RFC 7766): many pipelined queries per connection answered as they complete,
// idle and lifetime timeouts, caps on connections (global, per client) and queries per connection.

import { performance } from 'node:perf_hooks';
import net from 'node:net';
import { frame } from '../lib/dns/framing.js';
import { QueryContext } from '../core/context.js';
import type { TcpConfig } from '../config/types.js';
import { TRANSPORT_TCP, type Metrics } from '../lib/metrics.js';
import { Engine, lineSetId, replyRcode } from '../core/engine.js';
import { formatHostPort } from '../lib/net/address.js';
import type { ListenOptions } from '../lib/net/listen.js';

export interface TcpTransport {
  server: net.Server;
  port: number;
  close(): Promise<void>;
}

/** Open connections of one server, shared by all its listen addresses so caps are global. */
export class TcpConnectionCounts {
  total = 0;
  readonly perClient = new Map<string, number>();
}

/** Above this much unsent reply data, stop reading from a client that does not read. */
const MAX_UNSENT = 256 * 1024;

export function startTcp(
  host: string,
  port: number,
  getEngine: () => Engine,
  metrics: Metrics,
  getConfig: () => TcpConfig,
  counts = new TcpConnectionCounts(),
  opts: ListenOptions = {},
): Promise<TcpTransport> {
  const received = metrics.counter('tcp_queries_total', 'TCP queries received');
  const refusedConns = metrics.counter('tcp_connections_refused_total', 'TCP connections closed at once: over a connection cap');
  const idleClosed = metrics.counter('tcp_idle_closed_total', 'TCP connections closed after the idle timeout');
  const lifetimeClosed = metrics.counter('tcp_lifetime_closed_total', 'TCP connections closed at the maximum connection time');
  const accepted = metrics.counter('tcp_connections_total', 'TCP connections accepted');
  const sockets = new Set<net.Socket>();

  const server = net.createServer({ noDelay: true }, (socket) => {
    const cfg = getConfig();
    const client = socket.remoteAddress ?? '';
    const count = counts.perClient.get(client) ?? 0;
    if (counts.total >= cfg.maxConnections || count >= cfg.maxConnectionsPerClient) {
      refusedConns.value++;
      socket.destroy();
      return;
    }
    accepted.value++;
    sockets.add(socket);
    counts.total++;
    counts.perClient.set(client, count + 1);
    const family = socket.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4';
    const info = { address: client, port: socket.remotePort ?? 0, family } as const;

    let buffered: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    let queries = 0;
    let ending = false;
    let processing = false;
    let idle: NodeJS.Timeout | null = null;
    // Only whole messages re-arm the idle timer, so a slow-loris trickle still times out; a
    // connection waiting on its own answers is not idle.
    const armIdle = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        if (inFlight > 0) return armIdle();
        idleClosed.value++;
        socket.destroy();
      }, cfg.idleTimeoutMs);
    };
    const lifetime = setTimeout(() => {
      lifetimeClosed.value++;
      socket.destroy();
    }, cfg.maxConnectionMs);
    armIdle();

    const hasRoom = (): boolean => !ending && inFlight < cfg.maxPipelined && socket.writableLength < MAX_UNSENT;
    const maybeEnd = (): void => {
      if (ending && inFlight === 0 && !socket.destroyed) socket.end();
    };

    const send = (ctx: QueryContext, engine: Engine): void => {
      inFlight--;
      const out = ctx.response;
      if (out !== null && !socket.destroyed && socket.writable) {
        socket.write(frame(out));
        const stats = metrics.queries;
        if (stats !== null) stats.count(TRANSPORT_TCP, ctx.query?.qtype ?? 0, replyRcode(out), ctx.answeredBy, performance.now() - ctx.receivedAt, lineSetId(ctx));
        if (engine.observer !== null && engine.wantsReply()) engine.observer(Engine.replyInfo(ctx, out, false, performance.now()));
      }
      resumeIfRoom();
      maybeEnd();
    };

    /** Starts the buffered messages while the connection has room for more in flight. */
    function processBuffered(): void {
      if (processing) return; // a synchronous answer re-enters through send()
      processing = true;
      while (buffered.length >= 2 && hasRoom()) {
        const len = buffered.readUInt16BE(0);
        if (buffered.length < len + 2) break;
        const msg = Buffer.from(buffered.subarray(2, len + 2));
        buffered = buffered.subarray(len + 2);
        armIdle();
        received.value++;
        queries++;
        inFlight++;
        if (queries >= cfg.maxQueriesPerConnection) ending = true; // answer what is in flight, then close
        const ctx = new QueryContext(msg, info, 'tcp', performance.now());
        const engine = getEngine();
        const r = engine.run(ctx);
        if (r) r.then(() => send(ctx, engine), () => send(ctx, engine));
        else send(ctx, engine);
      }
      processing = false;
      if (!hasRoom()) socket.pause();
      maybeEnd();
    }

    function resumeIfRoom(): void {
      if (!hasRoom()) return;
      processBuffered();
      if (hasRoom() && socket.isPaused()) socket.resume();
    }

    socket.on('drain', resumeIfRoom);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      processBuffered();
    });
    socket.on('error', (err) => {
      // A client's reset is its own business; anything else is worth a (rate-limited) line.
      if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') opts.errors?.report('tcp connection', where, err);
      socket.destroy();
    });
    socket.on('close', () => {
      if (idle) clearTimeout(idle);
      clearTimeout(lifetime);
      sockets.delete(socket);
      counts.total--;
      const n = (counts.perClient.get(client) ?? 1) - 1;
      if (n <= 0) counts.perClient.delete(client);
      else counts.perClient.set(client, n);
    });
  });
  let where = formatHostPort(host, port);
  server.on('error', (err) => opts.errors?.report('tcp listen', where, err));

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // reusePort is Node >= 22.12's (the caller checks); exclusive keeps a cluster worker's socket its own.
    const listen: net.ListenOptions & { reusePort?: boolean } = { host, port, ipv6Only: net.isIPv6(host) };
    if (opts.reusePort === true) Object.assign(listen, { reusePort: true, exclusive: true });
    server.listen(listen, () => {
      server.off('error', reject);
      where = formatHostPort(host, (server.address() as net.AddressInfo).port);
      resolve({
        server,
        port: (server.address() as net.AddressInfo).port,
        close: () =>
          new Promise<void>((res) => {
            for (const s of sockets) s.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}
