// Abuse and limits (issue 3): TCP connection caps, timeouts and per-connection limits, bounded
// cache and upstream concurrency under floods, per-client rate limiting, and loopback-only defaults.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/app/config.js';
import type { AclOptions } from '../src/stages/acl/options.js';
import { Rcode } from '../src/lib/dns/constants.js';
import { DEFAULT_UDP_OPTIONS } from '../src/stages/forward/udp.js';
import { buildQuery, decode, query } from './helpers/client.js';
import { stageOptions, startLineDns, type Running } from './helpers/server.js';
import { simpleHandler, TestUpstream, type UpstreamHandler, type UpstreamRequest } from './helpers/upstream.js';
import { frame, sleep, TcpProbe, udpBurst, waitFor } from './helpers/tcp-abuse.js';

const LOCAL_RECORDS = [{ name: 'local.test', type: 'A', ttl: 60, rdata: '192.0.2.1' }];

/** Holds upstream answers until released, so "in flight" is a state the test controls. */
class Gate {
  private waiting: (() => void)[] = [];
  open = false;

  wait(): Promise<void> {
    if (this.open) return Promise.resolve();
    return new Promise((r) => this.waiting.push(r));
  }

  release(): void {
    this.open = true;
    for (const r of this.waiting.splice(0)) r();
  }
}

/** Answers A queries after `gate` opens; never-released answers are simply never sent. */
function gatedHandler(gate: Gate, held: (name: string) => boolean = () => true): UpstreamHandler {
  const answer = simpleHandler('203.0.113.7', 3600);
  return async (req: UpstreamRequest) => {
    if (held(req.packet.questions?.[0]?.name ?? '')) await gate.wait();
    return answer(req);
  };
}

interface Setup {
  dns: Running;
  upstream: TestUpstream;
  metric(name: string): number;
}

async function setup(t: TestContext, config: Record<string, unknown>, handler: UpstreamHandler = simpleHandler('203.0.113.1', 3600)): Promise<Setup> {
  const upstream = await TestUpstream.start(handler);
  const dns = await startLineDns({ config: { upstreams: [upstream.address], ...config }, records: LOCAL_RECORDS });
  t.after(async () => {
    await dns.close();
    await upstream.close();
  });
  return { dns, upstream, metric: (name) => dns.server.metrics.get(name) };
}

const q = (name: string, id = 0): Buffer => buildQuery({ name, type: 'A' }, { id });
const rcodeOf = (reply: Buffer): number => reply.readUInt16BE(2) & 0x0f;
const idOf = (reply: Buffer): number => reply.readUInt16BE(0);
const nameOf = (reply: Buffer): string => decode(reply).questions?.[0]?.name ?? '';

function countRcodes(replies: (Buffer | null)[]): { ok: number; refused: number; servfail: number; none: number } {
  const c = { ok: 0, refused: 0, servfail: 0, none: 0 };
  for (const r of replies) {
    if (r === null) c.none++;
    else if (rcodeOf(r) === Rcode.NOERROR) c.ok++;
    else if (rcodeOf(r) === Rcode.REFUSED) c.refused++;
    else if (rcodeOf(r) === Rcode.SERVFAIL) c.servfail++;
  }
  return c;
}

/** Connects and proves the server serves the connection, i.e. it was counted against the caps. */
async function servedProbe(port: number, opts: { host?: string; localAddress?: string }, probes: TcpProbe[]): Promise<TcpProbe | null> {
  const p = await TcpProbe.connect(port, opts);
  probes.push(p);
  const reply = await p.ask(q('local.test', 7), 1000);
  return reply !== null && rcodeOf(reply) === Rcode.NOERROR ? p : null;
}

/** A connection the server closes at once without answering: what a cap does. */
async function refusedProbe(port: number, opts: { host?: string; localAddress?: string }, probes: TcpProbe[]): Promise<boolean> {
  const p = await TcpProbe.connect(port, opts);
  probes.push(p);
  p.send(q('local.test', 8));
  const reply = await p.next(1000);
  return reply === null && (await p.waitClose(1000)) !== null;
}

function closeAll(t: TestContext): TcpProbe[] {
  const probes: TcpProbe[] = [];
  t.after(() => {
    for (const p of probes) p.destroy();
  });
  return probes;
}

// ---------------------------------------------------------------------------------------------
// TCP

test('tcp: maxConnections caps connections from every client together, and a freed slot is reused', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { maxConnections: 3, maxConnectionsPerClient: 100, idleTimeout: 5000 } });
  const probes = closeAll(t);
  const held: TcpProbe[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await servedProbe(dns.port, { localAddress: `127.0.0.${10 + i}` }, probes);
    assert.ok(p, `connection ${i + 1} of 3 is served`);
    held.push(p);
  }
  // Both a client already connected and a new one are over the global cap.
  assert.ok(await refusedProbe(dns.port, { localAddress: '127.0.0.10' }, probes), 'a 4th connection (known client) is closed unanswered');
  assert.ok(await refusedProbe(dns.port, { localAddress: '127.0.0.20' }, probes), 'a 4th connection (new client) is closed unanswered');
  assert.equal(metric('tcp_connections_refused_total'), 2);

  // The held connections are unaffected by the refusals.
  assert.ok(await held[2]!.ask(q('local.test', 9)), 'a connection under the cap is still served');

  // A close must give the slot back, or the cap would slowly lock every client out.
  held[0]!.destroy();
  let reused = false;
  for (let attempt = 0; attempt < 20 && !reused; attempt++) {
    reused = (await servedProbe(dns.port, { localAddress: '127.0.0.21' }, probes)) !== null;
    if (!reused) await sleep(50);
  }
  assert.ok(reused, 'after one connection closes, a new one is served');
});

test('tcp: maxConnectionsPerClient counts each client address separately', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { maxConnections: 100, maxConnectionsPerClient: 2, idleTimeout: 5000 } });
  const probes = closeAll(t);
  assert.ok(await servedProbe(dns.port, { localAddress: '127.0.0.2' }, probes), '127.0.0.2: connection 1 served');
  assert.ok(await servedProbe(dns.port, { localAddress: '127.0.0.2' }, probes), '127.0.0.2: connection 2 served');
  assert.ok(await refusedProbe(dns.port, { localAddress: '127.0.0.2' }, probes), '127.0.0.2: connection 3 refused');
  assert.equal(metric('tcp_connections_refused_total'), 1);
  assert.ok(await servedProbe(dns.port, { localAddress: '127.0.0.3' }, probes), '127.0.0.3: connection 1 served despite 127.0.0.2 at its cap');
  assert.ok(await servedProbe(dns.port, { localAddress: '127.0.0.3' }, probes), '127.0.0.3: connection 2 served');
  assert.ok(await refusedProbe(dns.port, { localAddress: '127.0.0.3' }, probes), '127.0.0.3: connection 3 refused');
  assert.equal(metric('tcp_connections_refused_total'), 2);
});

// The default config listens on two addresses; caps kept per address would double every limit.
const TWO_LISTENERS = ['127.0.0.1:0', '127.0.0.2:0'];

function tcpAddresses(dns: Running): [{ host: string; port: number }, { host: string; port: number }] {
  const tcp = dns.server.addresses.filter((a) => a.protocol === 'tcp');
  assert.equal(tcp.length, 2, 'listening on two addresses');
  return [tcp[0]!, tcp[1]!];
}

test('tcp: maxConnections is one cap across all listen addresses', async (t) => {
  const { dns, metric } = await setup(t, { listen: TWO_LISTENERS, tcp: { maxConnections: 2, maxConnectionsPerClient: 100, idleTimeout: 5000 } });
  const probes = closeAll(t);
  const [a, b] = tcpAddresses(dns);
  assert.ok(await servedProbe(a.port, { host: a.host, localAddress: '127.0.0.5' }, probes), 'connection 1 (first address) served');
  assert.ok(await servedProbe(b.port, { host: b.host, localAddress: '127.0.0.6' }, probes), 'connection 2 (second address) served');
  assert.ok(await refusedProbe(a.port, { host: a.host, localAddress: '127.0.0.7' }, probes), 'connection 3 (first address) refused: over maxConnections 2');
  assert.ok(await refusedProbe(b.port, { host: b.host, localAddress: '127.0.0.8' }, probes), 'connection 4 (second address) refused: over maxConnections 2');
  assert.equal(metric('tcp_connections_refused_total'), 2);
});

test('tcp: maxConnectionsPerClient is one cap across all listen addresses', async (t) => {
  const { dns, metric } = await setup(t, { listen: TWO_LISTENERS, tcp: { maxConnections: 100, maxConnectionsPerClient: 1, idleTimeout: 5000 } });
  const probes = closeAll(t);
  const [a, b] = tcpAddresses(dns);
  assert.ok(await servedProbe(a.port, { host: a.host, localAddress: '127.0.0.5' }, probes), '127.0.0.5 -> first address served');
  assert.ok(await refusedProbe(b.port, { host: b.host, localAddress: '127.0.0.5' }, probes), '127.0.0.5 -> second address refused: over maxConnectionsPerClient 1');
  assert.ok(await servedProbe(b.port, { host: b.host, localAddress: '127.0.0.6' }, probes), '127.0.0.6 -> second address served');
  assert.equal(metric('tcp_connections_refused_total'), 1);
});

test('tcp: an idle connection is closed after idleTimeout', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { idleTimeout: 300, maxConnectionTime: 10_000 } });
  const probes = closeAll(t);
  const p = await TcpProbe.connect(dns.port);
  probes.push(p);
  // Taken before sending: the server arms its timer after this, so the bound below is safe.
  const lastQueryAt = performance.now();
  assert.ok(await p.ask(q('local.test', 1)), 'the connection is served');
  assert.notEqual(await p.waitClose(2500), null, 'the idle connection is closed');
  const idleFor = p.closedAt! - lastQueryAt;
  assert.ok(idleFor >= 290, `closed after ${idleFor.toFixed(0)} ms idle, not before the 300 ms timeout`);
  assert.ok(idleFor < 2000, `closed after ${idleFor.toFixed(0)} ms idle`);
  assert.equal(metric('tcp_idle_closed_total'), 1);
  assert.equal(metric('tcp_lifetime_closed_total'), 0);
});

test('tcp: maxConnectionTime closes a busy connection that never goes idle', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { idleTimeout: 300, maxConnectionTime: 800 } });
  const probes = closeAll(t);
  const p = await TcpProbe.connect(dns.port);
  probes.push(p);
  let answered = 0;
  // Bounded: 60 rounds of at most ~310 ms, but the connection should end after ~800 ms.
  for (let i = 0; i < 60 && !p.closed; i++) {
    if (await p.ask(q('local.test', i), 250)) answered++;
    await sleep(60);
  }
  const life = p.lifetime;
  assert.notEqual(life, null, 'the connection was closed');
  assert.ok(life! >= 700, `closed after ${life!.toFixed(0)} ms, not before maxConnectionTime 800`);
  assert.ok(life! < 2500, `closed after ${life!.toFixed(0)} ms`);
  assert.ok(answered >= 5, `the connection was busy (answered ${answered}), longer than idleTimeout`);
  assert.equal(metric('tcp_lifetime_closed_total'), 1);
  assert.equal(metric('tcp_idle_closed_total'), 0);
});

test('tcp: maxQueriesPerConnection answers the allowed queries, ignores the rest and closes', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { maxQueriesPerConnection: 3, idleTimeout: 5000 } });
  const probes = closeAll(t);

  // Pipelined: five queries in one write.
  const p = await TcpProbe.connect(dns.port);
  probes.push(p);
  p.send(q('local.test', 1), q('local.test', 2), q('local.test', 3), q('local.test', 4), q('local.test', 5));
  const life = await p.waitClose(2000);
  assert.notEqual(life, null, 'the connection is closed after the allowed queries');
  assert.ok(life! < 2000, 'closed by the query cap, not by the 5 s idle timeout');
  assert.deepEqual(p.replies.map(idOf).sort((x, y) => x - y), [1, 2, 3]);

  // One at a time: the 4th query, sent after three answers, gets nothing.
  const s = await TcpProbe.connect(dns.port);
  probes.push(s);
  for (let i = 1; i <= 3; i++) assert.ok(await s.ask(q('local.test', 10 + i)), `query ${i} of 3 answered`);
  s.send(q('local.test', 14));
  assert.equal(await s.next(500), null, 'the 4th query is not answered');
  assert.notEqual(await s.waitClose(1500), null, 'and the connection is closed');
  assert.equal(metric('tcp_queries_total'), 6);
});

test('tcp: a slow-loris trickle of a length prefix and message is cut off by the idle timeout', async (t) => {
  const { dns, metric } = await setup(t, { tcp: { idleTimeout: 300, maxConnectionTime: 20_000 } });
  const probes = closeAll(t);
  const message = frame(q('a-long-label-that-takes-a-while-to-trickle.slowloris.local.test', 77));
  // A length prefix promising the largest message, then junk: buffered data must not count either.
  const huge = Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(100, 0x41)]);

  const trickle = async (bytes: Buffer): Promise<TcpProbe> => {
    const p = await TcpProbe.connect(dns.port);
    probes.push(p);
    // One byte every 40 ms: the whole message would take seconds, far beyond idleTimeout.
    for (let i = 0; i < bytes.length && !p.closed; i++) {
      p.write(bytes.subarray(i, i + 1));
      await sleep(40);
    }
    return p;
  };
  const [a, b] = await Promise.all([trickle(message), trickle(huge)]);
  for (const [p, what, total] of [[a, 'a trickled query', message.length], [b, 'a trickled 64 KiB prefix', huge.length]] as const) {
    const life = await p.waitClose(1000);
    assert.notEqual(life, null, `${what}: connection closed`);
    assert.ok(life! < 2000, `${what}: closed after ${life!.toFixed(0)} ms, near idleTimeout 300`);
    assert.ok(p.bytesWritten < total, `${what}: closed after ${p.bytesWritten} of ${total} bytes`);
    assert.equal(p.replies.length, 0);
  }
  assert.equal(metric('tcp_idle_closed_total'), 2);
  assert.equal(metric('tcp_queries_total'), 0);
});

test('tcp: pipelined queries are answered as they complete, each with its own ID', async (t) => {
  const gate = new Gate();
  const { dns, upstream, metric } = await setup(t, { tcp: { idleTimeout: 5000 } }, gatedHandler(gate, (name) => name === 'slow.test'));
  const probes = closeAll(t);
  const primed = await query(dns.port, { name: 'cached.test' });
  assert.equal(primed.answers?.length, 1, 'cached.test is in the cache');

  const p = await TcpProbe.connect(dns.port);
  probes.push(p);
  p.send(q('slow.test', 101), q('cached.test', 102), q('local.test', 103));
  const first = await p.next(1000);
  const second = await p.next(1000);
  assert.ok(first && second, 'the fast answers do not wait for the slow one');
  assert.deepEqual([idOf(first), idOf(second)].sort(), [102, 103]);
  for (const r of [first, second]) assert.equal(nameOf(r), idOf(r) === 102 ? 'cached.test' : 'local.test');
  assert.equal(metric('cache_hits_total'), 1, 'query 102 was a cache hit');
  assert.ok(await waitFor(() => upstream.requests.some((r) => r.packet.questions?.[0]?.name === 'slow.test'), 1000));

  gate.release();
  const third = await p.next(2000);
  assert.ok(third, 'the slow answer arrives after the fast ones');
  assert.equal(idOf(third), 101);
  assert.equal(nameOf(third), 'slow.test');
  assert.equal(rcodeOf(third), Rcode.NOERROR);
});

test('tcp: maxPipelined bounds the queries in flight from one connection, even in one write', async (t) => {
  const gate = new Gate();
  const { dns, upstream } = await setup(t, { tcp: { maxPipelined: 2, idleTimeout: 5000 } }, gatedHandler(gate));
  const probes = closeAll(t);
  const p = await TcpProbe.connect(dns.port);
  probes.push(p);
  p.send(...Array.from({ length: 6 }, (_, i) => q(`held${i}.test`, 200 + i)));
  assert.ok(await waitFor(() => upstream.requests.length >= 2, 1000), 'the first queries reach the upstream');
  await sleep(200);
  const inFlightSeen = upstream.requests.length;

  // The queries held back must still be answered once room frees up.
  gate.release();
  assert.ok(await waitFor(() => p.replies.length === 6, 3000), `all 6 answered (got ${p.replies.length})`);
  assert.deepEqual(p.replies.map(idOf).sort(), [200, 201, 202, 203, 204, 205]);
  assert.ok(inFlightSeen <= 2, `upstream saw ${inFlightSeen} queries in flight from one connection with maxPipelined 2`);
});

// ---------------------------------------------------------------------------------------------
// Memory stays bounded

const FLOOD = Number(process.env.LINEDNS_LIMITS_FLOOD ?? 20_000);

const udpSockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;

/**
 * Closes UDP sockets still open once every server of a test has closed. A leaked socket would
 * keep this test file alive forever, turning one failed assertion into a hung `npm test`.
 */
function closeLeakedUdpSockets(): void {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  for (const h of handles) {
    if (!(h instanceof dgram.Socket)) continue;
    try {
      h.close();
    } catch {
      // already closing
    }
  }
}

test(`flood: ${FLOOD} unique names keep the cache at maxEntries (1000) and upstream sockets bounded`, { timeout: 90_000 }, async (t) => {
  const socketsBefore = udpSockets();
  const upstream = await TestUpstream.start(simpleHandler('203.0.113.1', 3600));
  const dns = await startLineDns({ config: { upstreams: [upstream.address], cache: { maxEntries: 1000 } }, records: LOCAL_RECORDS });
  let closed = false;
  const closeServers = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await dns.close();
    await upstream.close();
  };
  t.after(async () => {
    await closeServers();
    closeLeakedUdpSockets();
  });
  const metric = (n: string): number => dns.server.metrics.get(n);
  const name = (i: number): string => `n${i}.flood.test`;

  // Warm up so the upstream socket pool is at its working size before counting sockets: it
  // fills lazily, one new socket per query, up to portsPerUpstream.
  const pool = DEFAULT_UDP_OPTIONS.portsPerUpstream;
  const warm = await udpBurst(dns.port, pool + 200, (i) => q(`w${i}.warm.test`, i), { window: 50 });
  assert.equal(countRcodes(warm).ok, pool + 200);
  await waitFor(() => udpSockets() <= socketsBefore + pool + 10, 500);
  const socketsWarm = udpSockets();
  const asked0 = upstream.requests.length;
  const stored0 = metric('cache_stores_total');

  const started = performance.now();
  const bulk = await udpBurst(dns.port, FLOOD - 1000, (i) => q(name(i), i & 0xffff), { window: 100, timeoutMs: 3000 });
  // The newest 1000 go one at a time, so "the 1000 most recently stored" are exactly these names.
  const tail = await udpBurst(dns.port, 1000, (i) => q(name(FLOOD - 1000 + i), i), { window: 1, timeoutMs: 3000 });
  const took = performance.now() - started;
  assert.equal([...bulk, ...tail].filter((r) => r === null).length, 0, `every flood query answered (${took.toFixed(0)} ms)`);
  assert.equal(upstream.requests.length - asked0, FLOOD);
  assert.equal(metric('cache_stores_total') - stored0, FLOOD);

  // The 1000 newest names are all still cached: none of them goes upstream again.
  const hits = metric('cache_hits_total');
  const recent = await udpBurst(dns.port, 1000, (i) => q(name(FLOOD - 1 - i), i), { window: 100 });
  assert.equal(countRcodes(recent).ok, 1000);
  assert.equal(metric('cache_hits_total') - hits, 1000, 'the 1000 newest names are cache hits');
  assert.equal(upstream.requests.length - asked0, FLOOD, 'and none went upstream');

  // The 1001st newest and a spread of older names were evicted: each goes upstream again.
  const older = [FLOOD - 1001, ...Array.from({ length: 50 }, (_, k) => Math.floor((k * (FLOOD - 1001)) / 50))];
  const again = await udpBurst(dns.port, older.length, (i) => q(name(older[i]!), i), { window: 100 });
  assert.equal(countRcodes(again).ok, older.length);
  assert.equal(upstream.requests.length - asked0, FLOOD + older.length, 'evicted names are asked upstream again');

  // Upstream sockets are rotated during a flood; the old ones must be closed, not leaked.
  const settled = await waitFor(() => udpSockets() <= socketsWarm, 2000);
  assert.ok(settled, `UDP sockets open after the flood: ${udpSockets()}, after warm-up: ${socketsWarm}`);
  await closeServers();
  const released = await waitFor(() => udpSockets() <= socketsBefore, 1000);
  assert.ok(released, `UDP sockets open after close: ${udpSockets()}, before the server started: ${socketsBefore}`);
});

test('forward: beyond maxOutstanding (50) slow upstream queries, the extra get SERVFAIL at once, counted', { timeout: 20_000 }, async (t) => {
  const gate = new Gate();
  const { dns, upstream, metric } = await setup(t, { forward: { maxOutstanding: 50, timeout: 4000, deadline: 5000 } }, gatedHandler(gate));
  let servfailWhileHeld = 0;
  const burst = udpBurst(dns.port, 80, (i) => q(`o${i}.slow.test`, i), {
    timeoutMs: 5000,
    onReply: (_i, r) => {
      if (!gate.open && rcodeOf(r) === Rcode.SERVFAIL) servfailWhileHeld++;
    },
  });
  const reached = await waitFor(() => metric('forward_overload_total') >= 30 && upstream.requests.length >= 50 && servfailWhileHeld >= 30, 3000);
  await sleep(100); // anything over the cap would show up now
  assert.ok(reached, `overload ${metric('forward_overload_total')}, upstream ${upstream.requests.length}, early SERVFAIL ${servfailWhileHeld}`);
  assert.equal(upstream.requests.length, 50, 'no more than 50 queries in flight upstream');
  assert.equal(metric('forward_overload_total'), 30);
  assert.equal(servfailWhileHeld, 30, 'the extra 30 got SERVFAIL without waiting for the upstream');

  gate.release();
  const c = countRcodes(await burst);
  assert.deepEqual(c, { ok: 50, refused: 0, servfail: 30, none: 0 });

  // Finished queries give their slots back: a second wave of 50 is served in full.
  const wave = countRcodes(await udpBurst(dns.port, 50, (i) => q(`p${i}.slow.test`, i), { timeoutMs: 3000 }));
  assert.equal(wave.ok, 50);
  assert.equal(metric('forward_overload_total'), 30);
});

// ---------------------------------------------------------------------------------------------
// Rate limiting

test('ratelimit: off by default, a rapid burst from one client is answered in full', async (t) => {
  const { dns, metric } = await setup(t, {});
  assert.equal(stageOptions(dns.server.config, 'ratelimit'), null);
  // 250 exceeds the default burst (2 x 100 qps) a configured limiter would allow.
  const replies = await udpBurst(dns.port, 250, (i) => q('local.test', i), { from: '127.0.0.5', window: 50 });
  assert.deepEqual(countRcodes(replies), { ok: 250, refused: 0, servfail: 0, none: 0 });
  assert.equal(metric('ratelimit_limited_total'), 0);
});

test('ratelimit: with qps 5 / burst 5, a burst of 20 gets 5 answers and 15 REFUSED; another /24 is unaffected', async (t) => {
  const { dns, metric } = await setup(t, { rateLimit: { qps: 5, burst: 5, ipv4Prefix: 24 } });
  const [limited, other] = await Promise.all([
    udpBurst(dns.port, 20, (i) => q('local.test', i), { from: '127.0.0.5', timeoutMs: 1000 }),
    udpBurst(dns.port, 5, (i) => q('local.test', i), { from: '127.0.1.5', timeoutMs: 1000 }),
  ]);
  assert.deepEqual(countRcodes(limited), { ok: 5, refused: 15, servfail: 0, none: 0 });
  assert.deepEqual(countRcodes(other), { ok: 5, refused: 0, servfail: 0, none: 0 }, '127.0.1.0/24 has its own bucket');
  assert.equal(metric('ratelimit_limited_total'), 15);

  // Tokens come back at qps: after ~400 ms about two (more if timers run late), never a full burst.
  await sleep(400);
  const later = countRcodes(await udpBurst(dns.port, 5, (i) => q('local.test', i), { from: '127.0.0.5', timeoutMs: 1000 }));
  assert.ok(later.ok >= 1 && later.ok <= 4, `after 400 ms ${later.ok} of 5 answered`);
  assert.equal(later.ok + later.refused, 5);
});

test('ratelimit: the bucket is shared by the whole client prefix (ipv4Prefix 24)', async (t) => {
  const { dns, metric } = await setup(t, { rateLimit: { qps: 5, burst: 5, ipv4Prefix: 24 } });
  const [a, b] = await Promise.all([
    udpBurst(dns.port, 10, (i) => q('local.test', i), { from: '127.0.0.5', timeoutMs: 1000 }),
    udpBurst(dns.port, 10, (i) => q('local.test', i), { from: '127.0.0.9', timeoutMs: 1000 }),
  ]);
  const ca = countRcodes(a);
  const cb = countRcodes(b);
  assert.equal(ca.ok + cb.ok, 5, `127.0.0.5 got ${ca.ok} and 127.0.0.9 got ${cb.ok}: one bucket for 127.0.0.0/24`);
  assert.equal(ca.refused + cb.refused, 15);
  assert.equal(metric('ratelimit_limited_total'), 15);
});

test('ratelimit: action "drop" sends nothing for the queries over the limit, and counts them', async (t) => {
  const { dns, metric } = await setup(t, { rateLimit: { qps: 5, burst: 5, action: 'drop' } });
  const replies = await udpBurst(dns.port, 20, (i) => q('local.test', i), { from: '127.0.0.5', timeoutMs: 600 });
  assert.deepEqual(countRcodes(replies), { ok: 5, refused: 0, servfail: 0, none: 15 });
  assert.equal(metric('ratelimit_limited_total'), 15);
});

// ---------------------------------------------------------------------------------------------
// Loopback-only defaults and allow

const loopback = new net.BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

function isLoopbackCidr(cidr: string): boolean {
  const [addr = '', len = ''] = cidr.split('/');
  const family = net.isIPv6(addr) ? 'ipv6' : 'ipv4';
  const bits = len === '' ? (family === 'ipv6' ? 128 : 32) : Number(len);
  return loopback.check(addr, family) && bits >= (family === 'ipv6' ? 128 : 8);
}

test('defaults: the shipped config and the built-in defaults listen on and allow only loopback', () => {
  const shipped = fileURLToPath(new URL('../../config/linedns.json', import.meta.url));
  for (const [what, { config }] of [['config/linedns.json', loadConfig(shipped)], ['built-in defaults', loadConfig(null)]] as const) {
    assert.ok(config.listen.length > 0, `${what}: listens somewhere`);
    for (const l of config.listen) assert.ok(loopback.check(l.host, net.isIPv6(l.host) ? 'ipv6' : 'ipv4'), `${what}: listen ${l.host} is loopback`);
    const allow = stageOptions<AclOptions>(config, 'acl')?.allow ?? [];
    assert.ok(allow.length > 0, `${what}: the acl stage is in the pipeline with an allow list`);
    for (const c of allow) assert.ok(isLoopbackCidr(c), `${what}: allow ${c} is within loopback`);
    assert.equal(stageOptions(config, 'ratelimit'), null, `${what}: rate limiting is off`);
  }
});

test('acl: with allow 127.0.0.1/32, 127.0.0.5 gets REFUSED over UDP and TCP and 127.0.0.1 its answer', async (t) => {
  const { dns, upstream, metric } = await setup(t, { allow: ['127.0.0.1/32'] });
  const probes = closeAll(t);

  const refused = await query(dns.port, { name: 'up.test' }, { from: '127.0.0.5' });
  assert.equal(refused.rcode, 'REFUSED');
  assert.equal(refused.answers?.length ?? 0, 0);

  const p = await TcpProbe.connect(dns.port, { localAddress: '127.0.0.5' });
  probes.push(p);
  const overTcp = await p.ask(q('up.test', 55));
  assert.ok(overTcp, 'TCP from 127.0.0.5 gets a reply');
  assert.equal(rcodeOf(overTcp), Rcode.REFUSED);
  assert.equal(upstream.requests.length, 0, 'a refused client never makes linedns ask upstream');
  assert.equal(metric('acl_refused_total'), 2);

  const allowed = await query(dns.port, { name: 'up.test' }, { from: '127.0.0.1' });
  assert.equal(allowed.rcode, 'NOERROR');
  assert.deepEqual(allowed.answers?.map((a) => (a as { data?: unknown }).data), ['203.0.113.1']);
  assert.equal(upstream.requests.length, 1);
  assert.equal(metric('acl_refused_total'), 2);
});
