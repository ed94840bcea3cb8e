// TCP upstreams over pooled, pipelined connections (src/stages/forward/stream.ts): reuse, replies
// matched by ID in any order, connections the server closes mid-flight (queries re-sent once),
// failures counted once per connection, the per-connection cap and idle close.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { Metrics } from '../src/lib/metrics.js';
import { StreamExchange } from '../src/stages/forward/stream.js';
import type { Failure, Waiter } from '../src/stages/forward/udp.js';
import type { UpstreamConfig } from '../src/config/types.js';
import { buildQuery, resolverFor } from './helpers/client.js';
import { makeCert } from './helpers/certs.js';
import { freePort } from './helpers/ports.js';
import { bounded, startLineDns, type Running } from './helpers/server.js';
import { closingEvery, numberedAnswer, StreamUpstream, type StreamHandler, type StreamRequest } from './helpers/stream-upstream.js';
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

  test('a query the server closes every connection on is re-sent once, then fails over with the query in flight beside it; the next query reconnects', async () => {
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
        // Both were re-sent once, together, on a new connection, which the server closed too.
        const names = (conn: number): string[] => up.requests.filter((q) => q.conn === conn).map((q) => q.packet.questions![0]!.name).sort();
        assert.deepEqual(names(1), ['die.example', 'hold.example']);
        assert.equal(ld.server.metrics.get('upstream_stream_retries_total'), 2);
        assert.deepEqual(await r.resolve4('q6.after.example'), ['192.0.2.6']);
        assert.equal(up.connections, 3, 'the query after the close did not open a new connection');
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

/** A linedns whose only upstream is `up` (a single-upstream route, as DoT often is: no failover hides a failed attempt). */
async function withOnly(up: StreamUpstream, upstream: Record<string, unknown>, body: (ld: Running) => Promise<void>): Promise<void> {
  const ld = await startLineDns({
    config: {
      upstreams: [{ address: up.address, ...upstream }],
      pipeline: ['decode', 'forward'],
      // No probe while the test runs: the connections counted are the queries' own.
      forward: { timeout: 1500, deadline: 4000, health: { maxFails: 3, checkInterval: 600_000 } },
    },
  });
  try {
    await body(ld);
  } finally {
    await bounded(ld.close(), 'linedns');
  }
}

describe('TCP/TLS upstream: connections the server closes (RFC 7766 6.2.4)', { timeout: 60_000 }, () => {
  const ROUNDS = 6;
  const CAP = 4;
  for (const protocol of ['tcp', 'tls'] as const) {
    // A TLS socket cannot be reset from Node: it is closed instead (close_notify, FIN).
    const other = protocol === 'tcp' ? 'reset' : 'close';
    test(`${protocol}: a server that closes each connection after ${CAP} replies (FIN, then ${other} on the next) with queries in flight: every query is answered, the upstream stays up`, async () => {
      const cert = protocol === 'tls' ? makeCert('dns.test') : null;
      const up = await StreamUpstream.start(closingEvery(CAP, (conn) => (conn % 2 === 0 ? 'end' : other)), cert === null ? {} : { tls: { key: cert.key, cert: cert.cert } });
      try {
        await withOnly(up, cert === null ? { protocol } : { protocol, servername: 'dns.test', ca: cert.caFile }, async (ld) => {
          const r = resolverFor(ld.port);
          // Rounds of CAP queries at once: a round finds its connection with k <= CAP replies
          // left, the rest are re-sent on a new one, which has room for all of them.
          for (let round = 0; round < ROUNDS; round++) {
            const got = await Promise.all(Array.from({ length: CAP }, (_, i) => r.resolve4(`q${round * CAP + i + 1}.cap.example`)));
            got.forEach((a, i) => assert.deepEqual(a, [`192.0.2.${round * CAP + i + 1}`], `round ${round}`));
          }
          const m = ld.server.metrics;
          // Each round after the first met a connection the server closed on one of its queries.
          assert.ok(m.get('upstream_stream_retries_total') >= ROUNDS - 1, `${m.get('upstream_stream_retries_total')} queries re-sent`);
          assert.ok(up.connections >= ROUNDS, `${up.connections} connections for ${ROUNDS * CAP} answers at ${CAP} per connection`);
          assert.equal(m.get('forward_timeouts_total'), 0, 'an attempt failed');
          assert.equal(m.get('forward_servfail_total'), 0);
          assert.equal(m.get('forward_upstream_down_total'), 0, 'the upstream was marked down');
          assert.equal(m.get('upstream_stream_connect_failures_total'), 0);
        });
      } finally {
        await bounded(up.close(), 'the upstream');
        if (cert !== null) rmSync(cert.dir, { recursive: true, force: true });
      }
    });
  }

  test('a server that closes every connection without answering: each attempt fails after one retry, counted once per connection; marked down only after health.maxFails of them', async () => {
    const up = await StreamUpstream.start(() => 'close');
    try {
      await withOnly(up, { protocol: 'tcp' }, async (ld) => {
        const r = resolverFor(ld.port);
        const m = ld.server.metrics;
        // Three at once share a connection, are re-sent together on a second, and fail: one failure.
        await Promise.all([1, 2, 3].map((i) => assert.rejects(r.resolve4(`q${i}.closed.example`), { code: 'ESERVFAIL' })));
        assert.equal(up.connections, 2, 'the queries were not re-sent once, together, on one new connection');
        assert.equal(m.get('upstream_stream_retries_total'), 3);
        assert.equal(m.get('forward_servfail_total'), 3);
        assert.equal(m.get('forward_upstream_down_total'), 0, 'one closed connection under 3 queries marked the upstream down');
        // Two connections in a row closed before any reply: from now on nothing is re-sent.
        await assert.rejects(r.resolve4('q4.closed.example'), { code: 'ESERVFAIL' });
        assert.equal(up.connections, 3);
        assert.equal(m.get('upstream_stream_retries_total'), 3);
        assert.equal(m.get('forward_upstream_down_total'), 0, 'marked down after 2 failed connections (maxFails 3)');
        await assert.rejects(r.resolve4('q5.closed.example'), { code: 'ESERVFAIL' });
        assert.equal(m.get('forward_upstream_down_total'), 1, 'not marked down after 3 failed connections');
        assert.equal(m.get('forward_route_down_total'), 0);
        await assert.rejects(r.resolve4('q6.closed.example'), { code: 'ESERVFAIL' });
        assert.equal(m.get('forward_route_down_total'), 1, 'a query to the route with its only upstream down was not answered SERVFAIL at once');
        assert.equal(up.connections, 4);
      });
    } finally {
      await bounded(up.close(), 'the upstream');
    }
  });
});

describe('stream pool: connections that close under queries', { timeout: 30_000 }, () => {
  // One object per upstream: the exchange keeps a pool per config object.
  const configs = new Map<number, UpstreamConfig>();
  const config = (port: number): UpstreamConfig => {
    let c = configs.get(port);
    if (c === undefined) configs.set(port, (c = { host: '127.0.0.1', port, protocol: 'tcp' }));
    return c;
  };

  test('a refused connection: nothing re-sent; one query reports the error, the others "dropped"', async () => {
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null);
    try {
      const port = await freePort();
      const ws = [1, 2, 3].map(() => new Collect());
      ws.forEach((w, i) => ex.send(config(port), buildQuery({ name: `q${i + 1}.refused.example` }), 5000, w));
      await until('the queries failed', () => ws.every((w) => w.got !== undefined));
      assert.deepEqual(ws.map((w) => [w.got, w.failure]), [[null, 'error'], [null, 'dropped'], [null, 'dropped']]);
      assert.equal(metrics.get('upstream_stream_retries_total'), 0);
      assert.equal(metrics.get('upstream_stream_connections_total'), 1);
      assert.equal(metrics.get('upstream_stream_connect_failures_total'), 1);
    } finally {
      ex.close();
    }
  });

  test('closed before any reply: re-sent once on one new connection; a second silent close fails them (one error, the rest dropped), a third re-sends nothing', async () => {
    const up = await StreamUpstream.start(() => 'close');
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null);
    try {
      const ws = [1, 2, 3].map(() => new Collect());
      ws.forEach((w, i) => ex.send(config(up.port), buildQuery({ name: `q${i + 1}.silent.example` }), 5000, w));
      await until('the queries failed', () => ws.every((w) => w.got !== undefined));
      assert.deepEqual(ws.map((w) => [w.got, w.failure]), [[null, 'error'], [null, 'dropped'], [null, 'dropped']]);
      assert.equal(metrics.get('upstream_stream_retries_total'), 3);
      assert.equal(up.connections, 2);
      const last = new Collect();
      ex.send(config(up.port), buildQuery({ name: 'q4.silent.example' }), 5000, last);
      await until('the fourth query failed', () => last.got !== undefined);
      assert.equal(last.failure, 'error');
      assert.equal(metrics.get('upstream_stream_retries_total'), 3);
      assert.equal(up.connections, 3);
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });

  test('a re-sent query keeps the time it had: it times out on the new connection, not later, and is not re-sent twice', async () => {
    // The first connection is closed as soon as a query arrives, the second never answers.
    const up = await StreamUpstream.start((req) => (req.conn === 0 ? 'close' : null));
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null);
    try {
      const w = new Collect();
      ex.send(config(up.port), buildQuery({ name: 'q1.kept.example' }), 300, w);
      await until('the query ended', () => w.got !== undefined);
      assert.equal(w.got, null);
      assert.equal(w.failure, 'timeout');
      assert.equal(metrics.get('upstream_stream_retries_total'), 1);
      assert.deepEqual(up.requests.map((r) => r.conn), [0, 1]);
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });

  test('after a connection that answered, a close re-sends again: the count of silent closes starts over at each reply', async () => {
    // Each connection answers one query and closes on the next: every close follows a reply.
    const up = await StreamUpstream.start(closingEvery(1, 'close'));
    const metrics = new Metrics();
    const ex = new StreamExchange(metrics, null);
    try {
      for (let i = 1; i <= 6; i++) {
        const w = new Collect();
        ex.send(config(up.port), buildQuery({ name: `q${i}.again.example` }), 5000, w);
        await until(`query ${i}`, () => w.got !== undefined);
        assert.ok(w.got?.includes(Buffer.from(`q${i}`)), `query ${i} failed (${w.failure})`);
      }
      // Query 1 opened a connection; each later one found it used up, was re-sent and answered.
      assert.equal(metrics.get('upstream_stream_retries_total'), 5);
      assert.equal(up.connections, 6);
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });
});
