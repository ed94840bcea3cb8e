// Upstream health and policies on real sockets: an upstream killed and revived under load (counted
// by what the dead one receives), SERVFAIL at once with none up, and each policy's spread.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Rcode } from '../src/lib/dns/constants.js';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import type { CounterOrGaugeMetric } from '../src/core/stage.js';
import { udpExchange } from './helpers/client.js';
import { aRecords, mustParse, rawQuery, type CheckedMessage } from './helpers/packets.js';
import { bounded, writeConfig } from './helpers/server.js';
import { simpleHandler, TestUpstream, type UpstreamHandler, type UpstreamRequest } from './helpers/upstream.js';

interface Rig {
  server: LineDnsServer;
  ups: TestUpstream[];
  logs: { msg: string; upstream?: string; route?: string; why?: string; last?: string }[];
  /** A metric of the forward stage's own (per upstream), for the upstream at `address`. */
  upstreamMetric(name: string, address: string): number;
  metric(name: string): number;
}

async function rig(t: TestContext, handlers: UpstreamHandler[], config: Record<string, unknown>): Promise<Rig> {
  const ups: TestUpstream[] = [];
  for (const h of handlers) ups.push(await TestUpstream.start(h));
  const { configFile } = writeConfig({ config: { upstreams: ups.map((u) => u.address), pipeline: ['decode', 'forward'], answerMemo: false, ...config } });
  const logs: Rig['logs'] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Rig['logs'][number]) });
  const server = await LineDnsServer.start(loadConfig(configFile).config, { logger });
  t.after(async () => {
    await bounded(server.close(), 'linedns');
    for (const u of ups) await bounded(u.close(), 'an upstream');
  });
  const forward = (): NonNullable<ReturnType<NonNullable<LineDnsServer['engine']['stages'][number]['metrics']>>> => server.engine.stages.find((s) => s.name === 'forward')!.metrics!();
  return {
    server,
    ups,
    logs,
    upstreamMetric(name, address) {
      const m = forward().find((x) => x.name === name) as CounterOrGaugeMetric | undefined;
      const sample = m?.samples.find((s) => s.labels.upstream === address);
      assert.ok(sample, `no ${name} sample for ${address}`);
      return sample.value;
    },
    metric: (n) => server.metrics.get(n),
  };
}

let nextId = 1;

async function ask(r: Rig, name: string): Promise<CheckedMessage> {
  return mustParse(await udpExchange(r.server.port, rawQuery(name, 1, { id: nextId++ & 0xffff }), { timeoutMs: 5000 }), `reply for ${name}`);
}

/** `count` queries at once, each for its own name; their replies. */
function wave(r: Rig, prefix: string, count: number): Promise<CheckedMessage[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => ask(r, `${prefix}${i}.load.test`)));
}

const isProbe = (q: UpstreamRequest): boolean => q.packet.questions?.[0]?.name === '.' || q.packet.questions?.[0]?.name === '' || q.packet.questions?.[0]?.name === 'health.check';
/** Client queries an upstream received (health probes left out). */
const clientQueries = (u: TestUpstream): number => u.requests.filter((q) => !isProbe(q)).length;
const probesTo = (u: TestUpstream): UpstreamRequest[] => u.requests.filter(isProbe);

/** Polls `cond` every 20 ms for at most `ms`; false if it never held. */
async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  for (let waited = 0; waited <= ms; waited += 20) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

/** An upstream whose answering (probes included) can be switched off, a blackhole, and on again. */
function switchable(address: string): { handler: UpstreamHandler; alive: boolean } {
  const answer = simpleHandler(address);
  // simpleHandler cannot answer the root (its SOA would name "ns.."): a probe gets an empty NOERROR.
  const s: { handler: UpstreamHandler; alive: boolean } = { alive: true, handler: (req) => (!s.alive ? null : isProbe(req) && req.packet.questions?.[0]?.type === 'NS' ? {} : answer(req)) };
  return s;
}

test('an upstream killed under load is marked down, gets no client query while down, is probed, and takes queries again once revived', async (t) => {
  const first = switchable('192.0.2.1');
  const r = await rig(t, [first.handler, simpleHandler('192.0.2.2')], { forward: { timeout: 300, deadline: 3000, health: { maxFails: 3, checkInterval: 100 } } });
  const [a, b] = [r.ups[0]!, r.ups[1]!];

  // Alive: sequential sends everything to the first.
  for (const m of await wave(r, 'alive', 20)) assert.deepEqual(aRecords(m).map((x) => x.split(' ')[1]), ['192.0.2.1']);
  assert.deepEqual([clientQueries(a), clientQueries(b)], [20, 0]);

  // Killed: the queries in flight fail over to the second; three failures mark it down.
  first.alive = false;
  for (let w = 0; w < 5 && r.upstreamMetric('upstream_up', a.address) === 1; w++) {
    for (const m of await wave(r, `dying${w}-`, 10)) assert.equal(m.rcode, Rcode.NOERROR, 'answered by the second after failover');
  }
  assert.equal(r.upstreamMetric('upstream_up', a.address), 0, 'marked down after failed attempts');
  const down = r.logs.filter((l) => l.msg.startsWith('upstream marked down'));
  assert.equal(down.length, 1, 'one log line for the transition');
  assert.equal(down[0]!.upstream, a.address);
  assert.deepEqual([down[0]!.route, down[0]!.why, down[0]!.last], ['.', '3 failures in a row', 'timeout']);

  // Down: under load, not one client query reaches it; every one is answered by the second.
  const before = clientQueries(a);
  const bBefore = clientQueries(b);
  for (let w = 0; w < 5; w++) for (const m of await wave(r, `down${w}-`, 20)) assert.deepEqual(aRecords(m).map((x) => x.split(' ')[1]), ['192.0.2.2']);
  assert.equal(clientQueries(a), before, 'the upstream marked down received client queries');
  assert.equal(clientQueries(b), bBefore + 100);
  assert.ok(await eventually(() => probesTo(a).length >= 2, 3000), 'the upstream marked down is probed');
  assert.ok(probesTo(a).every((q) => q.packet.questions?.[0]?.type === 'NS'), 'probes ask ". NS"');

  // Revived: a probe brings it back, and sequential sends it everything again.
  first.alive = true;
  assert.ok(await eventually(() => r.upstreamMetric('upstream_up', a.address) === 1, 3000), 'marked up by a probe');
  assert.equal(r.logs.filter((l) => l.msg === 'upstream back up').length, 1);
  const aBefore = clientQueries(a);
  const bAfter = clientQueries(b);
  for (const m of await wave(r, 'revived', 20)) assert.deepEqual(aRecords(m).map((x) => x.split(' ')[1]), ['192.0.2.1']);
  assert.deepEqual([clientQueries(a) - aBefore, clientQueries(b) - bAfter], [20, 0]);
  assert.equal(r.metric('forward_upstream_down_total'), 1);
});

test('queries already waiting for an upstream when it is marked down move on to the next one then, not at their own timeout', async (t) => {
  // deadline = timeout: a query that waits out its timeout on the dead upstream has no time left
  // for the second one (SERVFAIL); one moved on when the upstream is marked down has half of it.
  // minTimeout = timeout: every attempt waits the whole timeout, as before adaptive timeouts.
  const r = await rig(t, [() => null, simpleHandler('192.0.2.2')], { forward: { timeout: 1000, minTimeout: 1000, deadline: 1000, health: { maxFails: 3, checkInterval: 5000 } } });
  const first = wave(r, 'first', 3);
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(clientQueries(r.ups[0]!), 3, 'the first three are waiting on the silent upstream');
  const later = wave(r, 'later', 10);
  for (const m of await first) assert.equal(m.rcode, Rcode.SERVFAIL, 'the first three waited their whole deadline');
  for (const m of await later) assert.deepEqual(aRecords(m).map((x) => x.split(' ')[1]), ['192.0.2.2'], 'moved on when the upstream was marked down');
  assert.deepEqual([clientQueries(r.ups[0]!), clientQueries(r.ups[1]!)], [13, 10]);
  assert.equal(r.metric('forward_timeouts_total'), 13, 'each abandoned attempt counted once');
});

test('with every upstream of its route down a query gets SERVFAIL at once, nothing is sent, and the probe (a configured name) revives it', async (t) => {
  const only = switchable('192.0.2.7');
  const r = await rig(t, [only.handler], { forward: { timeout: 200, deadline: 2000, health: { maxFails: 2, checkInterval: 100, probeName: 'health.check', probeType: 'A' } } });
  const u = r.ups[0]!;
  only.alive = false;
  for (let i = 0; i < 2; i++) assert.equal((await ask(r, `fail${i}.test`)).rcode, Rcode.SERVFAIL);
  assert.equal(r.upstreamMetric('upstream_up', u.address), 0);
  const sent = clientQueries(u);
  for (const m of await wave(r, 'servfail', 30)) assert.equal(m.rcode, Rcode.SERVFAIL);
  assert.equal(clientQueries(u), sent, 'queries were sent to the only upstream, marked down');
  assert.equal(r.metric('forward_route_down_total'), 30);
  // To a client that sent EDNS the SERVFAIL says why: Extended DNS Error 22, No Reachable Authority.
  const withEdns = mustParse(await udpExchange(r.server.port, rawQuery('ede.test', 1, { id: 77, opt: {} }), { timeoutMs: 5000 }));
  assert.equal(withEdns.rcode, Rcode.SERVFAIL);
  assert.deepEqual(withEdns.opt?.rdata, Buffer.from([0, 15, 0, 2, 0, 22]), 'the OPT carries EDE 22 and nothing else');
  assert.equal((await ask(r, 'no-edns.test')).opt, null, 'no EDNS from the client: no OPT');
  assert.ok(await eventually(() => probesTo(u).length >= 1, 3000));
  assert.ok(probesTo(u).every((q) => q.packet.questions?.[0]?.name === 'health.check' && q.packet.questions[0].type === 'A'));
  only.alive = true;
  assert.ok(await eventually(() => r.upstreamMetric('upstream_up', u.address) === 1, 3000), 'marked up by a probe');
  assert.deepEqual(aRecords(await ask(r, 'back.test')), ['back.test 192.0.2.7']);
});

/** Client queries each upstream got for `n` queries asked `concurrent` at a time. */
async function spread(r: Rig, n: number, concurrent: number): Promise<number[]> {
  const before = r.ups.map(clientQueries);
  for (let sent = 0; sent < n; sent += concurrent) for (const m of await wave(r, `s${sent}-`, Math.min(concurrent, n - sent))) assert.equal(m.rcode, Rcode.NOERROR);
  return r.ups.map((u, i) => clientQueries(u) - before[i]!);
}

const three = (): UpstreamHandler[] => [simpleHandler('192.0.2.1'), simpleHandler('192.0.2.2'), simpleHandler('192.0.2.3')];

test('policy sequential (the default): every query to the first upstream', async (t) => {
  const r = await rig(t, three(), {});
  assert.deepEqual(await spread(r, 30, 10), [30, 0, 0]);
});

test('policy round_robin: one query each in turn', async (t) => {
  const r = await rig(t, three(), { forward: { policy: 'round_robin' } });
  assert.deepEqual(await spread(r, 30, 1), [10, 10, 10]);
});

test('policy random: each upstream gets about a third', async (t) => {
  const r = await rig(t, three(), { forward: { policy: 'random' } });
  const got = await spread(r, 300, 30);
  assert.equal(got.reduce((x, y) => x + y, 0), 300);
  // Binomial(300, 1/3): mean 100, standard deviation 8.2; outside 50..150 is beyond six of them.
  for (const n of got) assert.ok(n >= 50 && n <= 150, `random spread ${got.join('/')}`);
});

test('policy fastest: each upstream is tried, then the one with the lower smoothed RTT takes the queries', async (t) => {
  const slow = simpleHandler('192.0.2.1');
  const r = await rig(
    t,
    [
      async (req) => {
        await new Promise((res) => setTimeout(res, 60));
        return slow(req);
      },
      simpleHandler('192.0.2.2'),
    ],
    { forward: { policy: 'fastest' } },
  );
  const got = await spread(r, 40, 1);
  assert.ok(got[0]! >= 1, 'the untried first upstream was tried');
  assert.ok(got[1]! >= 35, `fastest spread ${got.join('/')}: the faster upstream should take nearly all`);
});
