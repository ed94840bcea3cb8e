// Connections linedns opens to a "tcp" upstream for N forwarded queries, and queries per connection:
// `node dist/bench/upstream-tcp.js [--queries 1000] [--concurrency 20]` (loopback only).

import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { silentLogger } from '../src/lib/logger.js';

function arg(name: string, d: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
}

const QUERIES = arg('queries', 1000);
const CONCURRENCY = arg('concurrency', 20);

/** A TCP DNS server answering every A query with 192.0.2.1, counting connections and queries. */
async function upstream(): Promise<{ server: net.Server; port: number; conns: number; queries: number }> {
  const state = { server: net.createServer(), port: 0, conns: 0, queries: 0 };
  state.server.on('connection', (s) => {
    state.conns++;
    s.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= buf.readUInt16BE(0) + 2) {
        const msg = buf.subarray(2, buf.readUInt16BE(0) + 2);
        buf = buf.subarray(msg.length + 2);
        state.queries++;
        const q = dnsPacket.decode(Buffer.from(msg));
        const out = dnsPacket.encode({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, answers: [{ name: q.questions![0]!.name, type: 'A', ttl: 60, data: '192.0.2.1' }] });
        const framed = Buffer.alloc(out.length + 2);
        framed.writeUInt16BE(out.length, 0);
        out.copy(framed, 2);
        s.write(framed);
      }
    });
  });
  await new Promise<void>((r) => state.server.listen(0, '127.0.0.1', r));
  state.port = (state.server.address() as net.AddressInfo).port;
  return state;
}

async function main(): Promise<void> {
  const up = await upstream();
  const dir = mkdtempSync(join(tmpdir(), 'linedns-bench-'));
  const file = join(dir, 'linedns.json');
  writeFileSync(file, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: [{ address: `127.0.0.1:${up.port}`, protocol: 'tcp' }], pipeline: ['decode', 'forward'] }));
  const ld = await LineDnsServer.start(loadConfig(file).config, { logger: silentLogger() });
  const client = dgram.createSocket('udp4');
  await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
  const waiting = new Map<number, () => void>();
  let answered = 0;
  client.on('message', (m) => {
    const id = m.readUInt16BE(0);
    const done = waiting.get(id);
    if (done === undefined) return;
    waiting.delete(id);
    if (m.readUInt16BE(6) === 1) answered++;
    done();
  });
  let next = 0;
  const start = performance.now();
  async function worker(): Promise<void> {
    while (next < QUERIES) {
      const n = next++;
      const q = dnsPacket.encode({ type: 'query', id: n % 65536, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: `q${n}.bench.example`, type: 'A' }] });
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          waiting.delete(n % 65536);
          resolve();
        }, 3000);
        waiting.set(n % 65536, () => {
          clearTimeout(t);
          resolve();
        });
        client.send(q, ld.port, '127.0.0.1');
      });
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const ms = performance.now() - start;
  client.close();
  await ld.close();
  up.server.close();
  console.log(JSON.stringify({ queries: QUERIES, concurrency: CONCURRENCY, answered, upstreamQueries: up.queries, connections: up.conns, queriesPerConnection: +(up.queries / Math.max(1, up.conns)).toFixed(1), ms: Math.round(ms) }));
  // Sockets the old one-connection-per-query client left in TIME_WAIT do not hold the process.
  process.exit(0);
}

void main();
