// Adaptive per-attempt timeouts on real sockets: failover from a silent upstream after about its
// RTO rather than forward.timeout, a slow upstream kept answering by backoff, the RTO's growth and cap; and its arithmetic.

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
import { simpleHandler, TestUpstream, type UpstreamHandler } from './helpers/upstream.js';
import { attemptTimeout, backOff, INITIAL_RTO_MS, newUpstreamState, recordAnswer } from '../src/stages/forward/upstreams.js';
import type { UdpUpstream } from '../src/stages/forward/udp.js';
import type { UpstreamConfig } from '../src/config/types.js';

interface Rig {
  server: LineDnsServer;
  ups: TestUpstream[];
  /** The forward stage's per-upstream metric `name` for the upstream at `address`. */
  upstreamMetric(name: string, address: string): number;
}

async function rig(t: TestContext, handlers: UpstreamHandler[], forward: Record<string, unknown>): Promise<Rig> {
  const ups: TestUpstream[] = [];
  for (const h of handlers) ups.push(await TestUpstream.start(h));
  const { configFile } = writeConfig({ config: { upstreams: ups.map((u) => u.address), pipeline: ['decode', 'forward'], answerMemo: false, forward } });
  const server = await LineDnsServer.start(loadConfig(configFile).config, { logger: pino({ level: 'silent' }) });
  t.after(async () => {
    await bounded(server.close(), 'linedns');
    for (const u of ups) await bounded(u.close(), 'an upstream');
  });
  return {
    server,
    ups,
    upstreamMetric(name, address) {
      const m = server.engine.stages.find((s) => s.name === 'forward')!.metrics!().find((x) => x.name === name) as CounterOrGaugeMetric | undefined;
      const sample = m?.samples.find((s) => s.labels.upstream === address);
      assert.ok(sample, `no ${name} sample for ${address}`);
      return sample.value;
    },
  };
}

let nextId = 1;

/** The reply to an A query for `name`, or null when none came within `waitMs`. */
async function ask(r: Rig, name: string, waitMs: number): Promise<CheckedMessage | null> {
  const reply = await udpExchange(r.server.port, rawQuery(name, 1, { id: nextId++ & 0xffff }), { timeoutMs: waitMs });
  return reply === null ? null : mustParse(reply, `reply for ${name}`);
}

const answeredBy = (m: CheckedMessage | null): string | undefined => (m === null ? undefined : aRecords(m)[0]?.split(' ')[1]);
const silent: UpstreamHandler = () => null;
/** Answers as simpleHandler(address) does, `ms` later. */
const slow = (address: string, ms: number): UpstreamHandler => {
  const answer = simpleHandler(address);
  return (req) => new Promise((res) => setTimeout(() => res(answer(req) as never), ms));
};

test('with [silent, live] upstreams the first queries fail over after about the initial RTO (376 ms), not forward.timeout', async (t) => {
  // timeout 5 s: before adaptive timeouts each of these waited 5 s for the silent one.
  const r = await rig(t, [silent, simpleHandler('192.0.2.2')], { timeout: 5000, deadline: 6000, health: { maxFails: 3, checkInterval: 5000 } });
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => ask(r, `warm${i}.rto.test`, 2500)));
  assert.deepEqual(replies.map(answeredBy), Array(10).fill('192.0.2.2'), 'every query answered by the live upstream within 2.5 s');
  assert.equal(r.ups[0]!.requests.filter((q) => q.packet.questions?.[0]?.name.endsWith('rto.test')).length, 10, 'each was sent to the silent one first');
});

test('an upstream that always answers after 300 ms keeps answering every query, in time', async (t) => {
  // minTimeout 50: nothing holds its RTO up but its own measurements and the backoff.
  const r = await rig(t, [slow('192.0.2.1', 300), simpleHandler('192.0.2.2')], { timeout: 2000, minTimeout: 50, deadline: 3000 });
  const by: (string | undefined)[] = [];
  for (let i = 0; i < 12; i++) {
    const m = await ask(r, `slow${i}.rto.test`, 3500);
    assert.ok(m !== null && m.rcode === Rcode.NOERROR, `query ${i} answered`);
    by.push(answeredBy(m));
  }
  // Its answers make its RTO srtt + 4 rttvar (above 300 ms); one that came after a too-short RTO
  // was failed over to the second and doubled the RTO for the next.
  const mine = by.filter((a) => a === '192.0.2.1').length;
  assert.ok(mine >= 9, `the slow upstream answered ${mine} of 12: ${by.join(', ')}`);
  assert.equal(r.upstreamMetric('upstream_up', r.ups[0]!.address), 1, 'never marked down');
  assert.ok(r.upstreamMetric('upstream_timeout_seconds', r.ups[0]!.address) > 0.3, 'its RTO is above its answer time');
});

test('a fast upstream turned slow is waited for longer after each timeout, and answers again', async (t) => {
  let delay = 0;
  const answer = simpleHandler('192.0.2.1');
  const changing: UpstreamHandler = (req) => (delay === 0 ? answer(req) : new Promise((res) => setTimeout(() => res(answer(req) as never), delay)));
  const r = await rig(t, [changing, simpleHandler('192.0.2.2')], { timeout: 2000, minTimeout: 50, deadline: 3000, health: { maxFails: 5 } });
  for (let i = 0; i < 10; i++) assert.equal(answeredBy(await ask(r, `fast${i}.rto.test`, 3500)), '192.0.2.1');
  // Measured fast: the RTO is at (or, on a loaded machine, near) minTimeout, well below 300 ms.
  const fast = r.upstreamMetric('upstream_timeout_seconds', r.ups[0]!.address);
  assert.ok(fast >= 0.05 && fast < 0.2, `RTO ${fast} s`);
  delay = 300;
  const by: (string | undefined)[] = [];
  for (let i = 0; i < 8; i++) by.push(answeredBy(await ask(r, `turned${i}.rto.test`, 3500)));
  assert.ok(!by.includes(undefined), `every query answered: ${by.join(', ')}`);
  assert.equal(by[0], '192.0.2.2', 'the first slow answer came after its 50 ms RTO: failed over');
  assert.deepEqual(by.slice(-3), ['192.0.2.1', '192.0.2.1', '192.0.2.1'], `backed off, it answers again: ${by.join(', ')}`);
});

test('the RTO of a silent upstream doubles on timeouts (once per burst) and stops at forward.timeout', async (t) => {
  const r = await rig(t, [silent, simpleHandler('192.0.2.2')], { timeout: 1000, deadline: 3000, health: { maxFails: 1000, checkInterval: 5000 } });
  const rto = (): number => r.upstreamMetric('upstream_timeout_seconds', r.ups[0]!.address);
  assert.equal(rto(), 0.376, 'untried: the initial RTO');
  // Five queries time out together, all sent with 376 ms: it doubles once, not five times.
  const burst = await Promise.all(Array.from({ length: 5 }, (_, i) => ask(r, `burst${i}.rto.test`, 3500)));
  assert.deepEqual(burst.map(answeredBy), Array(5).fill('192.0.2.2'));
  assert.equal(rto(), 0.752);
  const seen = [rto()];
  for (let i = 0; i < 3; i++) {
    assert.equal(answeredBy(await ask(r, `seq${i}.rto.test`, 3500)), '192.0.2.2');
    seen.push(rto());
  }
  assert.deepEqual(seen, [0.752, 1, 1, 1], 'doubled, then capped at timeout');
});

test('RTO arithmetic: first sample, later samples, Karn, backoff once per RTO sent with, the cap, an answer meanwhile wins', () => {
  const u = newUpstreamState({ host: '127.0.0.1', port: 53, protocol: 'udp' } as UpstreamConfig, '127.0.0.1:53', null as unknown as UdpUpstream);
  assert.deepEqual([u.srtt, u.rttvar, u.rto], [0, 0, INITIAL_RTO_MS]);
  assert.equal(attemptTimeout(u, 200, 2000), 376);
  recordAnswer(u, 100, true);
  assert.deepEqual([u.srtt, u.rttvar, u.rto], [100, 50, 300], 'RFC 6298 2.2: srtt R, rttvar R/2');
  recordAnswer(u, 500, false);
  assert.deepEqual([u.srtt, u.rttvar, u.rto, u.answered], [100, 50, 300, 2], "Karn: a retry's answer is counted, not sampled");
  recordAnswer(u, 20, true);
  assert.equal(u.rttvar, 50 + 0.25 * (80 - 50));
  assert.equal(u.srtt, 100 + 0.3 * (20 - 100));
  assert.equal(u.rto, u.srtt + 4 * u.rttvar);
  backOff(u, 400, 200, 2000); // sent when it was 400, now lower (an answer meanwhile): that wins
  assert.equal(u.rto, u.srtt + 4 * u.rttvar);
  u.rto = 400;
  backOff(u, 400, 200, 2000);
  backOff(u, 400, 200, 2000); // the same burst: still 800
  assert.equal(u.rto, 800);
  backOff(u, 800, 200, 1000);
  assert.equal(u.rto, 1000, 'capped');
  assert.equal(attemptTimeout(u, 200, 700), 700, 'never past timeout');
  u.rto = 5;
  assert.equal(attemptTimeout(u, 200, 2000), 200, 'never below minTimeout');
  backOff(u, 200, 200, 2000); // a timeout at the floor doubles from the floor
  assert.equal(u.rto, 400);
});
