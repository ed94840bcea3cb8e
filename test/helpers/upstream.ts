// A real DNS server on loopback (UDP + TCP, port 0) whose behaviour each test scripts:
// the upstream linedns forwards to in integration tests.

import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export type Packet = dnsPacket.DecodedPacket;

export interface UpstreamRequest {
  packet: Packet;
  raw: Buffer;
  protocol: 'udp' | 'tcp';
  rinfo: { address: string; port: number };
}

/**
 * What the handler returns: a packet to encode (ID and question are filled in from the query
 * when missing), raw bytes (sent as they are), an array of raw replies (sent in order), or null
 * for no answer at all.
 */
export type UpstreamReply = Partial<Packet> | Buffer | Buffer[] | null | Promise<Partial<Packet> | Buffer | Buffer[] | null>;
export type UpstreamHandler = (req: UpstreamRequest) => UpstreamReply;

/** Names linedns's forward stage probes for forwarding loops (src/stages/forward/index.ts). */
const LOOP_PROBE = /\.linedns-loop\.invalid$/i;

export class TestUpstream {
  readonly requests: UpstreamRequest[] = [];
  /**
   * Loop probes linedns sent at start or reload. They are answered NXDOMAIN here, as a real
   * resolver answers .invalid, and kept out of `requests` and the handler, so tests that count
   * or script upstream queries see only the queries they caused.
   */
  readonly loopProbes: UpstreamRequest[] = [];
  private readonly connections = new Set<net.Socket>();
  private constructor(
    readonly udp: dgram.Socket,
    readonly tcp: net.Server,
    readonly port: number,
    readonly host: string,
    public handler: UpstreamHandler,
  ) {}

  static async start(handler: UpstreamHandler, host = '127.0.0.1'): Promise<TestUpstream> {
    // The TCP side takes the port the kernel gave UDP; a TIME_WAIT from any test's TCP client can
    // hold it (EADDRINUSE), so try another port, closing the UDP socket that would else leak.
    for (let attempt = 0; ; attempt++) {
      const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((r) => udp.bind(0, host, r));
      const port = udp.address().port;
      const tcp = net.createServer();
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen(port, host, () => resolve());
        });
      } catch (err) {
        await new Promise<void>((r) => udp.close(() => r()));
        if (attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        continue;
      }
      return TestUpstream.wire(udp, tcp, port, host, handler);
    }
  }

  private static wire(udp: dgram.Socket, tcp: net.Server, port: number, host: string, handler: UpstreamHandler): TestUpstream {
    const up = new TestUpstream(udp, tcp, port, host, handler);
    udp.on('message', (raw, rinfo) => void up.onUdp(raw, rinfo));
    tcp.on('connection', (s) => up.onTcp(s));
    return up;
  }

  private async reply(raw: Buffer, protocol: 'udp' | 'tcp', rinfo: { address: string; port: number }): Promise<Buffer[]> {
    let packet: Packet;
    try {
      packet = dnsPacket.decode(raw);
    } catch {
      return [];
    }
    const req = { packet, raw, protocol, rinfo };
    if (LOOP_PROBE.test(packet.questions?.[0]?.name ?? '')) {
      this.loopProbes.push(req);
      return [encodeReply(packet, { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3 })];
    }
    this.requests.push(req);
    const r = await this.handler(req);
    if (r === null) return [];
    if (Buffer.isBuffer(r)) return [r];
    if (Array.isArray(r)) return r;
    return [encodeReply(packet, r)];
  }

  private async onUdp(raw: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    for (const out of await this.reply(raw, 'udp', rinfo)) this.udp.send(out, rinfo.port, rinfo.address);
  }

  private onTcp(socket: net.Socket): void {
    this.connections.add(socket);
    socket.on('close', () => this.connections.delete(socket));
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const msg = buf.subarray(2, buf.readUInt16BE(0) + 2);
        buf = buf.subarray(msg.length + 2);
        void this.reply(Buffer.from(msg), 'tcp', { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }).then((outs) => {
          for (const out of outs) {
            const framed = Buffer.alloc(out.length + 2);
            framed.writeUInt16BE(out.length, 0);
            out.copy(framed, 2);
            if (!socket.destroyed) socket.write(framed);
          }
        });
      }
    });
  }

  get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.udp.close(() => r()));
    // linedns keeps its TCP connections open for reuse: end them, or close() waits for its idle timeout.
    const closed = new Promise<void>((r) => this.tcp.close(() => r()));
    for (const c of this.connections) c.destroy();
    await closed;
  }
}

/** Encodes a reply to `query`: ID, question and QR/RD/RA are filled in unless given. */
export function encodeReply(query: Packet, r: Partial<Packet>): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: query.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: query.questions,
    ...r,
  } as dnsPacket.Packet);
}

/** A handler answering every A query with `address`, NXDOMAIN for names starting "nx.". */
export function simpleHandler(address = '203.0.113.1', ttl = 300): UpstreamHandler {
  return ({ packet }) => {
    const q = packet.questions![0]!;
    if (q.name.startsWith('nx.')) {
      return {
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3,
        authorities: [soa(q.name.split('.').slice(1).join('.') || '.', 60)],
      };
    }
    if (q.type === 'A') return { answers: [{ name: q.name, type: 'A', ttl, data: address }] };
    return { authorities: [soa(q.name, 60)] };
  };
}

export function soa(zone: string, ttl: number, minimum = ttl): dnsPacket.Answer {
  // The root's SOA names ns. and hostmaster.: "ns.." would make dns-packet miscount RDLENGTH.
  const under = zone === '.' || zone === '' ? '' : `.${zone}`;
  return {
    name: zone,
    type: 'SOA',
    ttl,
    data: { mname: `ns${under}`, rname: `hostmaster${under}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  } as dnsPacket.Answer;
}
