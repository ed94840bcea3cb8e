// Raw DNS clients for tests: UDP from a chosen loopback source address, and TCP with pipelining.
// Every call is bounded by a timeout.

import dgram from 'node:dgram';
import net from 'node:net';
import { Resolver } from 'node:dns/promises';
import dnsPacket from 'dns-packet';

export type Question = { name: string; type?: string; class?: string };

export interface QueryOptions {
  id?: number;
  flags?: number;
  /** Add an OPT record: payload size, DO, options. */
  edns?: { udpSize?: number; dnssecOk?: boolean; options?: dnsPacket.PacketOpt[] };
}

export function buildQuery(q: Question, opts: QueryOptions = {}): Buffer {
  const additionals: dnsPacket.Answer[] = [];
  if (opts.edns) {
    additionals.push({
      type: 'OPT',
      name: '.',
      udpPayloadSize: opts.edns.udpSize ?? 1232,
      flags: opts.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0,
      options: opts.edns.options ?? [],
    } as unknown as dnsPacket.Answer);
  }
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? Math.floor(Math.random() * 65536),
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: (q.type ?? 'A') as 'A', class: (q.class ?? 'IN') as 'IN' }],
    additionals,
  });
}

/** Sends raw bytes over UDP and resolves with the first reply, or null after `timeoutMs`. */
export function udpExchange(port: number, msg: Buffer, opts: { from?: string; to?: string; timeoutMs?: number } = {}): Promise<Buffer | null> {
  const to = opts.to ?? '127.0.0.1';
  const sock = dgram.createSocket(to.includes(':') ? 'udp6' : 'udp4');
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(null), opts.timeoutMs ?? 3000);
    const done = (v: Buffer | null): void => {
      clearTimeout(timer);
      sock.close();
      resolve(v);
    };
    sock.on('message', (m) => done(m));
    sock.on('error', () => done(null));
    sock.bind(0, opts.from ?? (to.includes(':') ? '::1' : '127.0.0.1'), () => sock.send(msg, port, to));
  });
}

export async function query(port: number, q: Question, opts: QueryOptions & { from?: string; timeoutMs?: number } = {}): Promise<dnsPacket.DecodedPacket & { rcode?: string }> {
  const reply = await udpExchange(port, buildQuery(q, opts), opts);
  if (reply === null) throw new Error(`no reply for ${q.name} ${q.type ?? 'A'}`);
  return dnsPacket.decode(reply) as dnsPacket.DecodedPacket & { rcode?: string };
}

/** Sends several messages on one TCP connection (pipelined) and collects `expect` replies. */
export function tcpExchange(port: number, msgs: Buffer[], opts: { expect?: number; timeoutMs?: number; host?: string } = {}): Promise<Buffer[]> {
  const expect = opts.expect ?? msgs.length;
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const sock = net.connect(port, opts.host ?? '127.0.0.1');
    const timer = setTimeout(() => finish(), opts.timeoutMs ?? 5000);
    const finish = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(out);
    };
    sock.on('error', finish);
    sock.on('close', finish);
    sock.on('connect', () => {
      const framed = msgs.map((m) => {
        const f = Buffer.alloc(m.length + 2);
        f.writeUInt16BE(m.length, 0);
        m.copy(f, 2);
        return f;
      });
      sock.write(Buffer.concat(framed));
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        out.push(Buffer.from(buf.subarray(2, buf.readUInt16BE(0) + 2)));
        buf = buf.subarray(out[out.length - 1]!.length + 2);
      }
      if (out.length >= expect) finish();
    });
  });
}

/** Node's own c-ares resolver pointed at linedns. */
export function resolverFor(port: number, host = '127.0.0.1'): Resolver {
  const r = new Resolver({ timeout: 3000, tries: 1 });
  r.setServers([host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`]);
  return r;
}

export function decode(buf: Buffer): dnsPacket.DecodedPacket & { rcode?: string } {
  return dnsPacket.decode(buf) as dnsPacket.DecodedPacket & { rcode?: string };
}

/** The RDATA of every answer record, for compact assertions. */
export function answerData(p: dnsPacket.DecodedPacket): unknown[] {
  return (p.answers ?? []).map((a) => (a as { data?: unknown }).data);
}
