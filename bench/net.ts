// Loopback helpers: free ports, a one-shot DNS probe to know when a server answers, and the
// raw wire pieces the reference servers share (question end, a fixed A answer).

import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';

export const LOOPBACK = '127.0.0.1';

/** A port free for both UDP and TCP on loopback (the servers bind both). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, LOOPBACK, () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const t = net.createServer();
      t.once('error', () => resolve(false));
      t.listen(port, LOOPBACK, () => t.close(() => resolve(true)));
    });
    if (tcpFree && !taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port found');
}

// Ports handed out in this run are not handed out again, even once closed: a server that is
// slow to bind must not find its port given to the next one.
const taken = new Set<number>();

/** Sends one query and resolves with the reply's rcode, or null after timeoutMs. */
export function queryOnce(port: number, name: string, timeoutMs: number, type: 'A' | 'SOA' = 'A'): Promise<string | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const id = Math.floor(Math.random() * 65536);
    const timer = setTimeout(() => done(null), timeoutMs);
    const done = (v: string | null): void => {
      clearTimeout(timer);
      s.close();
      resolve(v);
    };
    s.on('error', () => done(null));
    s.on('message', (msg) => {
      try {
        const d = dnsPacket.decode(msg) as dnsPacket.DecodedPacket & { rcode?: string };
        if (d.id === id) done(d.rcode ?? 'NOERROR');
      } catch {
        // not a DNS message: keep waiting
      }
    });
    s.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }), port, LOOPBACK);
  });
}

/** Polls until the server answers a query (any rcode), or throws after totalMs. */
export async function waitForDns(port: number, name: string, totalMs: number, isAlive: () => boolean = () => true): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < totalMs) {
    if (!isAlive()) throw new Error('the server exited before answering');
    const r = await queryOnce(port, name, 200);
    if (r !== null) return performance.now() - t0;
  }
  throw new Error(`no DNS answer on port ${port} within ${totalMs} ms`);
}

/** Offset just past the (single) question, or -1 when the packet is not a plain query. */
export function questionEnd(msg: Buffer): number {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return -1;
  let o = 12;
  while (o < msg.length) {
    const len = msg[o]!;
    if (len === 0) return o + 5 <= msg.length ? o + 5 : -1;
    if (len > 63) return -1;
    o += len + 1;
  }
  return -1;
}

/** An A record pointing back at the question name (offset 12), ready to append to a reply. */
export function answerTail(address: string, ttl: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16BE(0xc00c, 0);
  b.writeUInt16BE(1, 2);
  b.writeUInt16BE(1, 4);
  b.writeUInt32BE(ttl, 6);
  b.writeUInt16BE(4, 10);
  address.split('.').forEach((p, i) => (b[12 + i] = Number(p)));
  return b;
}

/**
 * Reply = the query's header and question, one A answer, no additional section. Used by the
 * fake upstream of the memory step; it answers every name so a million names need no zone.
 */
export function answerQuery(msg: Buffer, tail: Buffer): Buffer | null {
  const qEnd = questionEnd(msg);
  if (qEnd < 0) return null;
  const out = Buffer.allocUnsafe(qEnd + tail.length);
  msg.copy(out, 0, 0, qEnd);
  tail.copy(out, qEnd);
  // QR, keep opcode and RD, set RA; NOERROR.
  out[2] = (msg[2]! & 0x79) | 0x80;
  out[3] = 0x80;
  out.writeUInt16BE(1, 6);
  out.writeUInt32BE(0, 8);
  return out;
}
