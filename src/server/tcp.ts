// TCP transport (RFC 7766): many pipelined queries per connection answered as they complete,
// idle and lifetime timeouts, caps on connections (global, per client) and queries per connection.

import net from 'node:net';
import { QueryContext } from '../pipeline/context.js';
import type { TcpConfig } from '../config/types.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Engine } from './engine.js';

export interface TcpTransport {
  server: net.Server;
  port: number;
  close(): Promise<void>;
}

/** Above this much unsent reply data, stop reading from a client that does not read. */
const MAX_UNSENT = 256 * 1024;

export function startTcp(host: string, port: number, getEngine: () => Engine, metrics: Metrics, getConfig: () => TcpConfig): Promise<TcpTransport> {
  const received = metrics.counter('tcp_queries_total', 'TCP queries received');
  const refusedConns = metrics.counter('tcp_connections_refused_total', 'TCP connections closed at once: over a connection cap');
  const idleClosed = metrics.counter('tcp_idle_closed_total', 'TCP connections closed after the idle timeout');
  const lifetimeClosed = metrics.counter('tcp_lifetime_closed_total', 'TCP connections closed at the maximum connection time');
  const accepted = metrics.counter('tcp_connections_total', 'TCP connections accepted');
  const perClient = new Map<string, number>();
  const sockets = new Set<net.Socket>();

  const server = net.createServer({ noDelay: true }, (socket) => {
    const cfg = getConfig();
    const client = socket.remoteAddress ?? '';
    const count = perClient.get(client) ?? 0;
    if (sockets.size >= cfg.maxConnections || count >= cfg.maxConnectionsPerClient) {
      refusedConns.value++;
      socket.destroy();
      return;
    }
    accepted.value++;
    sockets.add(socket);
    perClient.set(client, count + 1);
    const family = socket.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4';
    const info = { address: client, port: socket.remotePort ?? 0, family } as const;

    let buffered: Buffer = Buffer.alloc(0);
    let inFlight = 0;
    let queries = 0;
    let ending = false;
    let idle: NodeJS.Timeout | null = null;
    // Only whole messages re-arm the idle timer, so a slow-loris trickle still times out.
    const armIdle = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        idleClosed.value++;
        socket.destroy();
      }, cfg.idleTimeoutMs);
    };
    const lifetime = setTimeout(() => {
      lifetimeClosed.value++;
      socket.destroy();
    }, cfg.maxConnectionMs);
    armIdle();

    const maybeEnd = (): void => {
      if (ending && inFlight === 0 && !socket.destroyed) socket.end();
    };
    const resumeIfRoom = (): void => {
      if (!ending && inFlight < cfg.maxPipelined && socket.writableLength < MAX_UNSENT && socket.isPaused()) socket.resume();
    };

    const send = (ctx: QueryContext): void => {
      inFlight--;
      const out = ctx.response;
      if (out !== null && !socket.destroyed && socket.writable) {
        const framed = Buffer.allocUnsafe(out.length + 2);
        framed.writeUInt16BE(out.length, 0);
        out.copy(framed, 2);
        socket.write(framed);
      }
      resumeIfRoom();
      maybeEnd();
    };

    socket.on('drain', resumeIfRoom);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && !ending) {
        const len = buffered.readUInt16BE(0);
        if (buffered.length < len + 2) break;
        const msg = Buffer.from(buffered.subarray(2, len + 2));
        buffered = buffered.subarray(len + 2);
        armIdle();
        received.value++;
        queries++;
        inFlight++;
        const ctx = new QueryContext(msg, info, 'tcp', performance.now());
        const r = getEngine().run(ctx);
        if (r) r.then(() => send(ctx), () => send(ctx));
        else send(ctx);
        if (queries >= cfg.maxQueriesPerConnection) {
          ending = true; // answer what is in flight, then close
          socket.pause();
        }
      }
      if (!ending && (inFlight >= cfg.maxPipelined || socket.writableLength >= MAX_UNSENT)) socket.pause();
      maybeEnd();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (idle) clearTimeout(idle);
      clearTimeout(lifetime);
      sockets.delete(socket);
      const n = (perClient.get(client) ?? 1) - 1;
      if (n <= 0) perClient.delete(client);
      else perClient.set(client, n);
    });
  });
  server.on('error', () => undefined);

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: net.isIPv6(host) }, () => {
      server.off('error', reject);
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
