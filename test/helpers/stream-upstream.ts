// A loopback DNS server over TCP or TLS (port 0) that counts connections and lets each test
// script replies per query: answer, hold and answer later (in any order), or close the connection
// (at once, gracefully with a FIN, or with a reset).

import net from 'node:net';
import tls from 'node:tls';
import dnsPacket from 'dns-packet';
import { encodeReply, type Packet } from './upstream.js';

export interface StreamRequest {
  packet: Packet;
  /** Which connection it came on: 0 for the first accepted, 1 for the next... */
  conn: number;
  socket: net.Socket;
}

/**
 * A reply to encode (ID and question filled in), raw bytes, null for none, or the connection's
 * end: 'close' destroys it at once, 'end' sends a FIN after the replies already written, 'reset'
 * sends a RST (TCP only: Node cannot reset a TLS socket). Queries read after 'end' get no reply.
 */
export type StreamReply = Partial<Packet> | Buffer | null | 'close' | 'end' | 'reset';
export type StreamHandler = (req: StreamRequest) => StreamReply | Promise<StreamReply>;

/** Answers A queries for `qN.<anything>` with 192.0.2.N (N < 256), anything else with 192.0.2.250. */
export function numberedAnswer(req: StreamRequest): Partial<Packet> {
  const q = req.packet.questions![0]!;
  const m = /^q(\d+)\./.exec(q.name);
  return { answers: [{ name: q.name, type: 'A', ttl: 60, data: `192.0.2.${m ? Number(m[1]) % 256 : 250}` }] };
}

/**
 * A server that answers `n` queries per connection (numberedAnswer) and ends the connection as
 * the next one arrives (`how`, or per connection as `how(conn)` says), leaving that query and
 * any sent after it unanswered: a server's cap on queries per connection.
 */
export function closingEvery(n: number, how: 'end' | 'reset' | 'close' | ((conn: number) => 'end' | 'reset' | 'close')): StreamHandler {
  const seen: number[] = [];
  return (req) => {
    const k = (seen[req.conn] = (seen[req.conn] ?? 0) + 1);
    if (k <= n) return numberedAnswer(req);
    if (k === n + 1) return typeof how === 'function' ? how(req.conn) : how;
    return null;
  };
}

export class StreamUpstream {
  readonly requests: StreamRequest[] = [];
  /** Connections accepted (TLS: handshakes completed). */
  connections = 0;
  /** TLS handshakes that failed on the server's side (the client gave up on our certificate). */
  handshakeErrors = 0;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    readonly host: string,
    public handler: StreamHandler,
  ) {}

  static async start(handler: StreamHandler, opts: { host?: string; tls?: { key: string; cert: string } } = {}): Promise<StreamUpstream> {
    const host = opts.host ?? '127.0.0.1';
    const server = opts.tls ? tls.createServer({ key: opts.tls.key, cert: opts.tls.cert }) : net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const up = new StreamUpstream(server, (server.address() as net.AddressInfo).port, host, handler);
    server.on(opts.tls ? 'secureConnection' : 'connection', (s: net.Socket) => up.serve(s));
    server.on('tlsClientError', () => up.handshakeErrors++);
    return up;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  private serve(socket: net.Socket): void {
    const conn = this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const msg = Buffer.from(buf.subarray(2, buf.readUInt16BE(0) + 2));
        buf = buf.subarray(msg.length + 2);
        let packet: Packet;
        try {
          packet = dnsPacket.decode(msg);
        } catch {
          continue;
        }
        const req = { packet, conn, socket };
        this.requests.push(req);
        void Promise.resolve(this.handler(req)).then((r) => {
          if (r === 'close') return void socket.destroy();
          if (r === 'end') return void socket.end();
          if (r === 'reset') return void socket.resetAndDestroy();
          if (r === null || socket.destroyed || socket.writableEnded) return;
          const out = Buffer.isBuffer(r) ? r : encodeReply(packet, r);
          const framed = Buffer.alloc(out.length + 2);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          socket.write(framed);
        });
      }
    });
  }

  /** Connections open now (from the server's side). */
  get open(): number {
    return this.sockets.size;
  }

  /** Resolves once no connection is open, or rejects after `ms` (a bounded wait, not a timing assertion). */
  async allClosed(ms = 5000): Promise<void> {
    const until = Date.now() + ms;
    while (this.sockets.size > 0) {
      if (Date.now() > until) throw new Error(`${this.sockets.size} connection(s) still open after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
