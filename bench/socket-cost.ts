// Micro-benchmark behind the upstream source-port design (src/stages/forward/udp.ts): what a fresh
// UDP socket per query costs against a pooled one, in CPU per query, on loopback only.

import dgram from 'node:dgram';
import { literalLookup } from '../src/lib/net/literal-lookup.js';

const ROUNDS = 3;
const QUERIES = 4000;
const PAYLOAD = Buffer.alloc(40, 7);

/** An echo responder on loopback: the "upstream" for every variant alike. */
async function echo(): Promise<{ port: number; close(): void }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return { port: s.address().port, close: () => s.close() };
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Runs `one` QUERIES times, 64 in flight, and reports CPU µs per query. */
async function measure(name: string, one: () => Promise<void>): Promise<number> {
  const cpu0 = cpuMicros();
  const t0 = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < QUERIES) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: 64 }, lane));
  const per = (cpuMicros() - cpu0) / QUERIES;
  console.log(`${name.padEnd(44)} ${per.toFixed(1).padStart(6)} CPU µs/query  ${((performance.now() - t0) * 1000 / QUERIES).toFixed(1).padStart(6)} wall µs/query`);
  return per;
}

/**
 * A pool of `size` sockets picked at random per query, replies matched by a 2-octet ID as the
 * exchange does: measures what spreading replies over many sockets costs in reads per wake-up.
 */
async function makePool(size: number, port: number, connected: boolean): Promise<{ one(): Promise<void>; close(): void }> {
  const sockets: { s: dgram.Socket; waiting: Map<number, () => void> }[] = [];
  for (let i = 0; i < size; i++) {
    const s = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
    const waiting = new Map<number, () => void>();
    s.on('message', (m) => {
      const id = m.readUInt16BE(0);
      const r = waiting.get(id);
      waiting.delete(id);
      r?.();
    });
    await new Promise<void>((r) => s.bind({ port: 0, exclusive: true }, r));
    if (connected) {
      s.connect(port, '127.0.0.1');
      await new Promise<void>((r) => s.once('connect', r));
    }
    sockets.push({ s, waiting });
  }
  let id = 0;
  return {
    one() {
      const p = sockets[Math.floor(Math.random() * size)]!;
      const buf = Buffer.from(PAYLOAD);
      const myId = id++ & 0xffff;
      buf.writeUInt16BE(myId, 0);
      return new Promise<void>((resolve) => {
        p.waiting.set(myId, resolve);
        if (connected) p.s.send(buf);
        else p.s.send(buf, port, '127.0.0.1');
      });
    },
    close() {
      for (const p of sockets) p.s.close();
    },
  };
}

function awaitReply(s: dgram.Socket): Promise<void> {
  return new Promise((resolve) => s.once('message', () => resolve()));
}

async function main(): Promise<void> {
  const up = await echo();
  // Baseline: one socket per lane, reused (the old two-socket pool is close to this).
  const results: Record<string, number[]> = {};
  const add = (k: string, v: number): void => {
    (results[k] ??= []).push(v);
  };
  for (let round = 0; round < ROUNDS; round++) {
    const lanes: dgram.Socket[] = [];
    for (let i = 0; i < 64; i++) {
      const s = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
      await new Promise<void>((r) => s.bind({ port: 0, exclusive: true }, r));
      s.connect(up.port, '127.0.0.1');
      await new Promise<void>((r) => s.once('connect', r));
      lanes.push(s);
    }
    let k = 0;
    add('pooled connected socket', await measure('pooled connected socket', () => {
      const s = lanes[k++ % 64]!;
      const p = awaitReply(s);
      s.send(PAYLOAD);
      return p;
    }));
    for (const s of lanes) s.close();

    for (const [size, connected] of [[2, false], [1024, false], [1024, true]] as const) {
      const pl = await makePool(size, up.port, connected);
      const label = `pool of ${size} ${connected ? 'connected' : 'unconnected'}, random pick`;
      add(label, await measure(label, () => pl.one()));
      pl.close();
    }

    add('fresh socket: bind, send, close', await measure('fresh socket: bind, send, close', async () => {
      const s = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
      s.bind({ port: 0, exclusive: true });
      const p = awaitReply(s);
      s.send(PAYLOAD, up.port, '127.0.0.1');
      await p;
      s.close();
    }));

    add('fresh socket: bind, connect, send, close', await measure('fresh socket: bind, connect, send, close', async () => {
      const s = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
      s.bind({ port: 0, exclusive: true });
      s.connect(up.port, '127.0.0.1');
      await new Promise<void>((r) => s.once('connect', r));
      const p = awaitReply(s);
      s.send(PAYLOAD);
      await p;
      s.close();
    }));

    // The pool's cost to (re)build: 1024 sockets bound and connected, then closed.
    const cpu0 = cpuMicros();
    const pool: dgram.Socket[] = [];
    await Promise.all(Array.from({ length: 1024 }, async () => {
      const s = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
      s.bind({ port: 0, exclusive: true });
      s.connect(up.port, '127.0.0.1');
      await new Promise<void>((r) => s.once('connect', r));
      pool.push(s);
    }));
    const opened = cpuMicros();
    for (const s of pool) s.close();
    await new Promise((r) => setImmediate(r));
    const perSocket = (cpuMicros() - cpu0) / 1024;
    console.log(`${'1024 sockets opened+connected, then closed'.padEnd(44)} ${perSocket.toFixed(1).padStart(6)} CPU µs/socket (open ${((opened - cpu0) / 1024).toFixed(1)})`);
    add('socket open+connect+close', perSocket);
  }
  console.log('\nmedians over', ROUNDS, 'rounds:');
  for (const [k, v] of Object.entries(results)) console.log(`  ${k.padEnd(44)} ${v.sort((a, b) => a - b)[v.length >> 1]!.toFixed(1)} µs`);
  up.close();
}

await main();
