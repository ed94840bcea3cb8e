// The forward stage through real sockets: timeout in entry and top-level form and by default,
// reloaded in place; deadline; the retry without EDNS; rcodes and failover; the down marking.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { Rcode } from '../../src/lib/dns/constants.js';
import type { ForwardOptions } from '../../src/stages/forward/options.js';
import { udpExchange } from '../helpers/client.js';
import { aRecords, mustParse, rawQuery, type CheckedMessage } from '../helpers/packets.js';
import { bounded, stageOptions, startLineDns, type Running } from '../helpers/server.js';
import { simpleHandler, TestUpstream, type UpstreamHandler } from '../helpers/upstream.js';

const ANSWER = '203.0.113.1';
const DEFAULTS: ForwardOptions = {
  timeout: 2000,
  minTimeout: 200,
  deadline: 4500,
  maxOutstanding: 10000,
  randomizeCase: false,
  sourcePorts: 1024,
  clientSubnet: 'off',
  policy: 'sequential',
  health: { maxFails: 3, checkInterval: 500, probeName: '.', probeType: 'NS' },
};

/** simpleHandler's answer, `ms` late. */
function late(ms: number): UpstreamHandler {
  const answer = simpleHandler(ANSWER);
  return async (req) => {
    await new Promise((r) => setTimeout(r, ms));
    return answer(req);
  };
}

interface Rig {
  ld: Running;
  ups: TestUpstream[];
  metric(name: string): number;
}

/** linedns (no cache: every query goes upstream) in front of one upstream per handler. */
async function rig(t: TestContext, handlers: UpstreamHandler[], config: Record<string, unknown>): Promise<Rig> {
  const ups: TestUpstream[] = [];
  for (const h of handlers) ups.push(await TestUpstream.start(h));
  const ld = await startLineDns({ config: { upstreams: ups.map((u) => u.address), pipeline: ['decode', 'forward'], ...config } });
  t.after(async () => {
    await bounded(ld.close(), 'linedns');
    for (const u of ups) await bounded(u.close(), 'an upstream');
  });
  return { ld, ups, metric: (n) => ld.server.metrics.get(n) };
}

let nextId = 300;

async function ask(r: Rig, name: string): Promise<{ m: CheckedMessage; ms: number }> {
  const t0 = performance.now();
  const m = mustParse(await udpExchange(r.ld.port, rawQuery(name, 1, { id: nextId++ & 0xffff }), { timeoutMs: 5000 }), `reply for ${name}`);
  return { m, ms: performance.now() - t0 };
}

test('forward: timeout by default, from the top-level key, and from the entry over the top-level key', async (t) => {
  const byDefault = await rig(t, [late(400)], {});
  assert.deepEqual(stageOptions<ForwardOptions>(byDefault.ld.server.config, 'forward'), DEFAULTS);
  assert.deepEqual(aRecords((await ask(byDefault, 'a.test')).m), [`a.test ${ANSWER}`], '400 ms is within the default 2000');

  // Silent: a late reply would be sent after the upstream closed.
  const top = await rig(t, [() => null], { forward: { timeout: 150 } });
  const cut = await ask(top, 'b.test');
  assert.equal(cut.m.rcode, Rcode.SERVFAIL);
  assert.ok(cut.ms < 1500, `SERVFAIL after ${cut.ms} ms, not after the default 2000`);

  const entry = await rig(t, [late(400)], { forward: { timeout: 150 }, pipeline: ['decode', { forward: { timeout: 1500 } }] });
  assert.equal(stageOptions<ForwardOptions>(entry.ld.server.config, 'forward')?.timeout, 1500);
  assert.deepEqual(aRecords((await ask(entry, 'c.test')).m), [`c.test ${ANSWER}`]);
});

test('forward: a reload applies a new timeout in place; the counters tell queries from attempts', async (t) => {
  const r = await rig(t, [late(400)], { pipeline: ['decode', { forward: { timeout: 150 } }] });
  const stages = r.ld.server.engine.stages;
  assert.equal((await ask(r, 'd.test')).m.rcode, Rcode.SERVFAIL);
  assert.deepEqual([r.metric('forward_queries_total'), r.metric('forward_timeouts_total'), r.metric('forward_servfail_total')], [1, 1, 1]);

  writeFileSync(r.ld.configFile, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: [r.ups[0]!.address], pipeline: ['decode', { forward: { timeout: 1500 } }] }));
  assert.equal(await r.ld.server.reloadFromFile(), true);
  assert.equal(r.ld.server.engine.stages, stages, 'reloaded in place, not rebuilt');
  assert.deepEqual(aRecords((await ask(r, 'e.test')).m), [`e.test ${ANSWER}`]);
  assert.deepEqual([r.metric('forward_queries_total'), r.metric('forward_timeouts_total'), r.metric('forward_servfail_total')], [2, 1, 1]);
});

test('forward: the deadline cuts an attempt short of its timeout', async (t) => {
  const r = await rig(t, [() => null], { pipeline: ['decode', { forward: { timeout: 5000, deadline: 200 } }] });
  const { m, ms } = await ask(r, 'f.test');
  assert.equal(m.rcode, Rcode.SERVFAIL);
  assert.ok(ms >= 180 && ms < 2500, `SERVFAIL after ${ms} ms, not after the 5000 ms timeout`);
});

test('forward: an upstream that answers FORMERR without OPT is asked once more without EDNS', async (t) => {
  const answer = simpleHandler(ANSWER);
  const r = await rig(
    t,
    [
      (req) => {
        const hasOpt = (req.packet.additionals ?? []).some((a) => a.type === 'OPT');
        return hasOpt ? { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | Rcode.FORMERR } : answer(req);
      },
    ],
    {},
  );
  assert.deepEqual(aRecords((await ask(r, 'old.test')).m), [`old.test ${ANSWER}`]);
  const sent = r.ups[0]!.requests.map((q) => (q.packet.additionals ?? []).some((a) => a.type === 'OPT'));
  assert.deepEqual(sent, [true, false], 'with OPT, then without');
  assert.deepEqual([r.metric('forward_queries_total'), r.metric('forward_timeouts_total')], [1, 0]);
});

test("forward: the last upstream's REFUSED reaches the client as SERVFAIL, not as REFUSED", async (t) => {
  const r = await rig(t, [() => ({ flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | Rcode.REFUSED })], {});
  const { m } = await ask(r, 'refused.test');
  assert.equal(m.rcode, Rcode.SERVFAIL);
  assert.deepEqual([r.metric('forward_servfail_total'), r.metric('forward_timeouts_total')], [1, 0], 'an answer, if a useless one: no timeout counted');
});

/** Client queries an upstream received: its requests without the health probes (". NS"). */
const clientQueries = (u: TestUpstream): number => u.requests.filter((q) => q.packet.questions?.[0]?.name !== '' && q.packet.questions?.[0]?.name !== '.').length;

test('forward: after three failed attempts in a row an upstream is marked down, so answers come at once', async (t) => {
  // minTimeout = timeout: each attempt to the silent one waits 600 ms (adaptive timeouts: upstream-rto.test.ts).
  const r = await rig(t, [() => null, simpleHandler(ANSWER)], { pipeline: ['decode', { forward: { timeout: 600, minTimeout: 600, deadline: 3000 } }] });
  for (let i = 0; i < 3; i++) {
    const { m, ms } = await ask(r, `slow${i}.test`);
    assert.deepEqual(aRecords(m), [`slow${i}.test ${ANSWER}`]);
    assert.ok(ms >= 580, `query ${i} answered after ${ms} ms: before the first upstream timed out`);
  }
  assert.equal(clientQueries(r.ups[0]!), 3);
  const { m, ms } = await ask(r, 'quick.test');
  assert.deepEqual(aRecords(m), [`quick.test ${ANSWER}`]);
  assert.ok(ms < 580, `answered after ${ms} ms: the silent upstream was waited for`);
  assert.equal(clientQueries(r.ups[0]!), 3, 'the silent upstream was not asked');
  assert.equal(r.metric('forward_timeouts_total'), 3);
});
