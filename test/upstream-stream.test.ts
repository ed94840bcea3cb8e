// TCP upstreams over pooled, pipelined connections (src/stages/forward/stream.ts): reuse, replies
// matched by ID in any order, a connection dying mid-flight, the per-connection cap and idle close.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { Metrics } from '../src/lib/metrics.js';
import { StreamExchange } from '../src/stages/forward/stream.js';
import type { Failure, Waiter } from '../src/stages/forward/udp.js';
import type { UpstreamConfig } from '../src/config/types.js';
import { buildQuery, resolverFor } from './helpers/client.js';
import { bounded, startLineDns, type Running } from './helpers/server.js';
import { numberedAnswer, StreamUpstream, type StreamHandler, type StreamRequest } from './helpers/stream-upstream.js';
import { TestUpstream } from './helpers/upstream.js';

const LATER = '192.0.2.77';
/** Async: linedns runs in this process, so a blocking child would leave it no turn to answer. */
const run = promisify(execFile);

function hasDig(): boolean {
  try {
    execFileSync('dig', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function withTcpRig(
  handler: StreamHandler,
  body: (ld: Running, up: StreamUpstream, second: TestUpstream) => Promise<void>,
): Promise<void> {
  const up = await StreamUpstream.start(handler);
  const second = await TestUpstream.start(() => ({ answers: [] }));
  second.handler = ({ packet }) => ({ answers: [{ name: packet.questions![0]!.name, type: 'A', ttl: 60, data: LATER }] });
  const ld = await startLineDns({
    config: {
      upstreams: [{ address: up.address, protocol: 'tcp' }, second.address],
      pipeline: ['decode', 'forward'],
      forward: { timeout: 1500, deadline: 4000 },
    },
  });
  try {
    await body(ld, up, second);
  } finally {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the TCP upstream');
    await bounded(second.close(), 'the second upstream');
  }
}

describe('TCP upstream: connection reuse and pipelining', { timeout: 60_000 }, () => {
  test('20 queries one after another over a "tcp" upstream share one connection', async () => {
    await withTcpRig(numberedAnswer, async (ld, up) => {
      const r = resolverFor(ld.port);
      for (let i = 1; i <= 20; i++) assert.deepEqual(await r.resolve4(`q${i}.seq.example`), [`192.0.2.${i}`]);
      assert.equal(up.requests.length, 20);
      assert.equal(up.connections, 1, `${up.connections} connections for 20 queries`);
      assert.equal(ld.server.metrics.get('upstream_stream_connections_total'), 1);
      assert.equal(ld.server.metrics.get('upstream_stream_reused_total'), 19);
    });
  });

  test('concurrent queries are pipelined on one connection, and dig gets the answer too', async () => {
    await withTcpRig(numberedAnswer, async (ld, up) => {
      const r = resolverFor(ld.port);
      const got = await Promise.all(Array.from({ length: 30 }, (_, i) => r.resolve4(`q${i + 1}.conc.example`)));
      got.forEach((a, i) => assert.deepEqual(a, [`192.0.2.${i + 1}`]));
      assert.equal(up.connections, 1);
      if (hasDig()) {
        const { stdout: out } = await run('dig', ['@127.0.0.1', '-p', String(ld.port), 'q42.dig.example', 'A', '+short', '+tries=1', '+time=3']);
        assert.equal(out.trim(), '192.0.2.42');
        assert.equal(up.connections, 1);
      }
    });
  });

  test('pipelined replies sent in reverse order are each matched to their query by ID', async () => {
    const held: Array<{ req: StreamRequest; release: () => void }> = [];
    const N = 8;
    await withTcpRig(
      (req) =>
        new Promise((resolve) => {
          held.push({ req, release: () => resolve(numberedAnswer(req)) });
          // Everything is held until all N are in, then answered last first.
          if (held.length === N) for (let k = held.length - 1; k >= 0; k--) held[k]!.release();
        }),
      async (ld, up) => {
        const r = resolverFor(ld.port);
        const got = await Promise.all(Array.from({ length: N }, (_, i) => r.resolve4(`q${i + 1}.order.example`)));
        got.forEach((a, i) => assert.deepEqual(a, [`192.0.2.${i + 1}`]));
        assert.equal(up.connections, 1);
        assert.ok(held.every((h) => h.req.conn === 0));
        const ids = new Set(held.map((h) => h.req.packet.id));
        assert.equal(ids.size, N, 'two queries in flight on one connection had the same ID');
      },
    );
  });

  test('the server closing the connection mid-flight fails over just those queries; the next query reconnects', async () => {
    let holdRelease: (() => void) | null = null;
    await withTcpRig(
      (req) => {
        const name = req.packet.questions![0]!.name;
        if (name.startsWith('hold.')) return new Promise<null>((resolve) => (holdRelease = () => resolve(null)));
        if (name.startsWith('die.')) return 'close';
        return numberedAnswer(req);
      },
      async (ld, up, second) => {
        const r = resolverFor(ld.port);
        assert.deepEqual(await r.resolve4('q5.before.example'), ['192.0.2.5']);
        const held = r.resolve4('hold.example');
        // The held query is in flight on the connection before the one that kills it is sent.
        for (let i = 0; i < 200 && !up.requests.some((q) => q.packet.questions![0]!.name === 'hold.example'); i++) await new Promise((res) => setTimeout(res, 10));
        assert.deepEqual(await r.resolve4('die.example'), [LATER], 'the query whose connection died did not fail over');
        assert.deepEqual(await held, [LATER], 'a query in flight on the dead connection did not fail over');
        assert.deepEqual(second.requests.map((q) => q.packet.questions![0]!.name).sort(), ['die.example', 'hold.example']);
        assert.deepEqual(await r.resolve4('q6.after.example'), ['192.0.2.6']);
        assert.equal(up.connections, 2, 'the query after the close did not open a new connection');
        holdRelease?.();
      },
    );
  });
});

describe('TCP upstream: reloads', { timeout: 30_000 }, () => {
  test('a reload that keeps an upstream keeps its connection; one that removes it closes its pool', async () => {
    const a = await StreamUpstream.start(numberedAnswer);
    const b = await StreamUpstream.start(numberedAnswer);
    const config = (ups: StreamUpstream[], timeout: number): string =>
      JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: ups.map((u) => ({ address: u.address, protocol: 'tcp' })), pipeline: ['decode', 'forward'], forward: { timeout } });
    const ld = await startLineDns({ config: JSON.parse(config([a], 1500)) as Record<string, unknown> });
    try {
      const r = resolverFor(ld.port);
      assert.deepEqual(await r.resolve4('q1.reload.example'), ['192.0.2.1']);
      writeFileSync(ld.configFile, config([a], 1600));
      assert.equal(await ld.server.reloadFromFile(), true);
      assert.deepEqual(await r.resolve4('q2.reload.example'), ['192.0.2.2']);
      assert.equal(a.connections, 1, 'a reload that kept the upstream reopened its connection');
      writeFileSync(ld.configFile, config([b], 1600));
      assert.equal(await ld.server.reloadFromFile(), true);
      await a.allClosed();
      assert.deepEqual(await r.resolve4('q3.reload.example'), ['192.0.2.3']);
      assert.equal(b.requests.length, 1);
    } finally {
      await bounded(ld.close(), 'linedns');
      await bounded(a.close(), 'upstream a');
      await bounded(b.close(), 'upstream b');
    }
  });
});

/** Collects what the pool hands each query. */
class Collect implements Waiter<Buffer> {
  got: Buffer | null | undefined = undefined;
  failure: Failure | undefined;
  constructor(private readonly onDone: () => void = () => undefined) {}
  accept(reply: Buffer): Buffer | null {
    return Buffer.from(reply);
  }
  done(result: Buffer | null, failure?: Failure): void {
    this.got = result;
    this.failure = failure;
    this.onDone();
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('stream pool: bounds', { timeout: 30_000 }, () => {
  test('past maxInFlight a second connection opens; past maxConnections a query fails at once; idle connections close; the next query reconnects', async () => {
    const release: Array<() => void> = [];
    const up = await StreamUpstream.start((req) => new Promise((resolve) => release.push(() => resolve(numberedAnswer(req)))));
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null, { maxConnections: 2, maxInFlight: 3, idleMs: 200 });
    const config: UpstreamConfig = { host: '127.0.0.1', port: up.port, protocol: 'tcp' };
    try {
      const waiters = Array.from({ length: 6 }, () => new Collect());
      waiters.forEach((w, i) => ex.send(config, buildQuery({ name: `q${i + 1}.pool.example` }), 5000, w));
      await until('6 queries at the server', () => up.requests.length === 6);
      assert.equal(up.connections, 2);
      assert.deepEqual(up.requests.map((r) => r.conn).sort(), [0, 0, 0, 1, 1, 1]);
      const over = new Collect();
      ex.send(config, buildQuery({ name: 'over.pool.example' }), 5000, over);
      assert.equal(over.got, null, 'a query beyond maxConnections x maxInFlight did not fail at once');
      assert.equal(over.failure, 'error');
      assert.equal(metrics.get('upstream_stream_full_total'), 1);
      for (const r of release.splice(0)) r();
      await until('6 replies', () => waiters.every((w) => w.got !== undefined));
      waiters.forEach((w, i) => assert.ok(w.got?.includes(Buffer.from(`q${i + 1}`)), `query ${i + 1} got another query's reply`));
      await up.allClosed();
      const again = new Collect();
      ex.send(config, buildQuery({ name: 'q9.again.example' }), 5000, again);
      await until('the query after idle close at the server', () => up.requests.length === 7);
      for (const r of release.splice(0)) r();
      await until('its reply', () => again.got !== undefined);
      assert.ok(again.got !== null);
      assert.equal(up.connections, 3);
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });

  test('a stream sending more frames than it was asked for is closed, failing what is in flight on it', async () => {
    const up = await StreamUpstream.start((req) => {
      // Two unsolicited replies with other IDs per query: a stream out of step with us.
      const junk = (id: number): Buffer => {
        const b = Buffer.alloc(12);
        b.writeUInt16BE(id, 0);
        b.writeUInt16BE(0x8180, 2);
        return b;
      };
      req.socket.write(Buffer.concat([Buffer.from([0, 12]), junk(req.packet.id! ^ 1), Buffer.from([0, 12]), junk(req.packet.id! ^ 2)]));
      return null;
    });
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null);
    try {
      const w = new Collect();
      ex.send({ host: '127.0.0.1', port: up.port, protocol: 'tcp' }, buildQuery({ name: 'junk.example' }), 5000, w);
      await until('the query failed', () => w.got !== undefined);
      assert.equal(w.got, null);
      assert.equal(w.failure, 'unusable');
      assert.equal(metrics.get('upstream_stream_frames_ignored_total'), 2);
      await up.allClosed();
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });
});
