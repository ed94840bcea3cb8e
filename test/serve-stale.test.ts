// Serve-stale (RFC 8767) on real loopback sockets: an answer cached with a 1 s TTL, then an
// upstream scripted to fail (silent or SERVFAIL), slow, or back again; the recheck window; fork().

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { compose } from '../src/core/compose.js';
import { QueryContext } from '../src/core/context.js';
import { parseQuery, type ParsedQuery } from '../src/lib/dns/query.js';
import { ecsOption, rawQuery, type CheckedMessage } from './helpers/packets.js';
import { withUpstream, writeConfig, type Running } from './helpers/server.js';
import { portOf, serve } from './helpers/serve.js';
import { simpleHandler, TestUpstream, type UpstreamHandler, type UpstreamReply } from './helpers/upstream.js';
import { ask } from './helpers/split.js';
import { findBinary, runTool } from './helpers/peers.js';
import { eventually, secondStarts } from './helpers/seconds.js';

const T = { timeout: 30_000 };

type Mode = 'ok' | 'silent' | 'servfail' | 'slow';

/**
 * An upstream whose behaviour the test switches: answers (A with `address`, TTL `ttl`), says
 * nothing, answers SERVFAIL, or answers after `delayMs`.
 */
class Script {
  mode: Mode = 'ok';
  address = '203.0.113.1';
  ttl = 1;
  delayMs = 600;
  readonly handler: UpstreamHandler = (req): UpstreamReply => {
    if (this.mode === 'silent') return null;
    if (this.mode === 'servfail') return { flags: 0x8180 | 2 };
    const answer = simpleHandler(this.address, this.ttl)(req);
    if (this.mode === 'slow') return sleep(this.delayMs).then(() => answer as Exclude<UpstreamReply, Promise<unknown>>);
    return answer;
  };
}

/** linedns with a fast-failing forward (SERVFAIL within 400 ms when the upstream is silent). */
async function withScript(cache: Record<string, unknown>, body: (ld: Running, up: TestUpstream, s: Script) => Promise<void>, forward = { timeout: 200, deadline: 400 }): Promise<void> {
  const s = new Script();
  await withUpstream(s.handler, { config: { answerMemo: false, forward, pipeline: ['decode', { cache }, 'forward'] } }, (ld, up) => body(ld, up, s));
}

const addressOf = (m: CheckedMessage): string => {
  const a = m.records.find((r) => r.section === 0 && r.type === 1);
  assert.ok(a, 'an A record in the answer');
  return [...a.rdata].join('.');
};

const answerTtls = (m: CheckedMessage): number[] => m.records.filter((r) => r.type !== 41).map((r) => r.ttl);

/** The options of the reply's OPT record as [code, data] pairs, read independently of src/. */
function optOptions(m: CheckedMessage): [number, Buffer][] {
  assert.ok(m.opt, 'an OPT record in the reply');
  const out: [number, Buffer][] = [];
  const d = m.opt.rdata;
  for (let o = 0; o + 4 <= d.length; ) {
    const len = d.readUInt16BE(o + 2);
    assert.ok(o + 4 + len <= d.length, 'an option inside its OPT');
    out.push([d.readUInt16BE(o), d.subarray(o + 4, o + 4 + len)]);
    o += 4 + len;
  }
  return out;
}

const DIG = findBinary('dig');

test('a stale answer carries Extended DNS Error 3 (Stale Answer) when the client sent EDNS, beside its ECS; a fresh one none', T, async () => {
  await withScript({ staleClientTimeout: 0 }, async (ld, _up, s) => {
    const stored = await secondStarts();
    const fresh = await ask(ld.port, 'ede.example', '127.0.0.1', {});
    assert.deepEqual(optOptions(fresh), [], 'a fresh answer: no option');
    await secondStarts(stored + 1);
    s.mode = 'silent';
    const stale = await ask(ld.port, 'ede.example', '127.0.0.1', {});
    assert.deepEqual(answerTtls(stale), [30], 'stale');
    assert.deepEqual(optOptions(stale), [[15, Buffer.from([0, 3])]], 'EDE INFO-CODE 3, no EXTRA-TEXT');
    const plain = await ask(ld.port, 'ede.example', '127.0.0.1');
    assert.deepEqual([answerTtls(plain), plain.opt], [[30], null], 'no EDNS from the client: no OPT, so no EDE');
    // With a Client Subnet from the client both options go on linedns's one OPT, ECS last (decode's hook runs outermost).
    const withEcs = await ask(ld.port, 'ede.example', '127.0.0.1', { options: [ecsOption(1, 24, 0, [10, 1, 2])] });
    assert.deepEqual(optOptions(withEcs).map(([code]) => code), [15, 8]);
    if (DIG !== null) {
      const r = await runTool(DIG, ['@127.0.0.1', '-p', String(ld.port), '+tries=1', '+time=3', 'ede.example', 'A']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /; EDE: 3 \(Stale Answer\)/);
      assert.match(r.stdout, /ede\.example\.\s+30\s+IN\s+A\s+203\.0\.113\.1/);
    }
  });
});

test('an expired answer whose upstream went silent is served stale with TTL 30; the upstream back gives a fresh one', T, async () => {
  await withScript({ staleRefreshInterval: 0 }, async (ld, up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    const fresh = await ask(ld.port, 'stale.example', '127.0.0.1');
    assert.equal(fresh.rcode, 0);
    assert.deepEqual(answerTtls(fresh), [1]);
    await secondStarts(stored + 1); // expired now (TTL 1)
    s.mode = 'silent';
    const stale = await ask(ld.port, 'stale.example', '127.0.0.1');
    assert.equal(stale.rcode, 0, 'stale, not SERVFAIL');
    assert.equal(addressOf(stale), '203.0.113.1');
    assert.deepEqual(answerTtls(stale), [30]);
    assert.equal(up.requests.length, 2, 'the refresh was tried');
    assert.equal(metric('cache_stale_served_total'), 1);
    // staleRefreshInterval 0: the next lookup tries again, and the upstream is back.
    s.mode = 'ok';
    s.address = '203.0.113.2';
    s.ttl = 60;
    const back = await ask(ld.port, 'stale.example', '127.0.0.1');
    assert.equal(addressOf(back), '203.0.113.2');
    assert.deepEqual(answerTtls(back), [60]);
    assert.equal(up.requests.length, 3);
    assert.equal(addressOf(await ask(ld.port, 'stale.example', '127.0.0.1')), '203.0.113.2', 'the refreshed answer was stored');
    assert.equal(up.requests.length, 3);
    assert.equal(metric('cache_stale_served_total'), 1);
  });
});

test('after a refresh got SERVFAIL the stale answer is served at once for staleRefreshInterval, then the refresh is tried again', T, async () => {
  await withScript({ staleRefreshInterval: 1 }, async (ld, up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    await ask(ld.port, 'recheck.example', '127.0.0.1');
    const failedAt = await secondStarts(stored + 1);
    s.mode = 'servfail';
    const first = await ask(ld.port, 'recheck.example', '127.0.0.1');
    assert.deepEqual([first.rcode, addressOf(first), answerTtls(first)], [0, '203.0.113.1', [30]]);
    assert.equal(up.requests.length, 2);
    s.mode = 'ok';
    s.address = '203.0.113.3';
    // Within the second of the failure: stale at once, the upstream (answering again) not asked.
    for (let i = 0; i < 3; i++) {
      const again = await ask(ld.port, 'recheck.example', '127.0.0.1');
      assert.deepEqual([again.rcode, addressOf(again), answerTtls(again)], [0, '203.0.113.1', [30]]);
    }
    assert.equal(up.requests.length, 2, 'no refresh within the recheck window');
    assert.equal(metric('cache_stale_served_total'), 4);
    // The window (1 s after the failure's second) is over: refreshed, fresh answer.
    await secondStarts(failedAt + 1);
    const fresh = await ask(ld.port, 'recheck.example', '127.0.0.1');
    assert.equal(addressOf(fresh), '203.0.113.3');
    assert.equal(up.requests.length, 3);
  });
});

test('staleClientTimeout: a slow refresh gets the client the stale answer at the timeout, and updates the cache when it lands', T, async () => {
  // The upstream answers after 600 ms, well within forward's timeout; the client waits 150 ms.
  await withScript(
    { staleClientTimeout: 150 },
    async (ld, up, s) => {
      const metric = (n: string): number => ld.server.metrics.get(n);
      const stored = await secondStarts();
      await ask(ld.port, 'slow.example', '127.0.0.1');
      await secondStarts(stored + 1);
      s.mode = 'slow';
      s.address = '203.0.113.4';
      s.ttl = 60;
      const stale = await ask(ld.port, 'slow.example', '127.0.0.1');
      assert.deepEqual([stale.rcode, addressOf(stale), answerTtls(stale)], [0, '203.0.113.1', [30]]);
      assert.equal(metric('cache_stale_served_total'), 1);
      // While the background refresh runs, another client gets the stale answer at once.
      const during = await ask(ld.port, 'slow.example', '127.0.0.1');
      assert.equal(addressOf(during), '203.0.113.1');
      assert.equal(up.requests.length, 2, 'one refresh at a time');
      await eventually(() => metric('cache_stores_total') === 2, 'the background refresh stored its answer');
      s.mode = 'ok';
      const after = await ask(ld.port, 'slow.example', '127.0.0.1');
      assert.equal(addressOf(after), '203.0.113.4', 'answered from the refreshed entry');
      assert.ok(answerTtls(after)[0]! <= 60 && answerTtls(after)[0]! >= 55);
      assert.equal(up.requests.length, 2, 'from the cache');
    },
    { timeout: 2000, deadline: 3000 },
  );
});

test('staleClientTimeout 0: the stale answer at once, however healthy the upstream; the refresh lands behind it', T, async () => {
  await withScript({ staleClientTimeout: 0 }, async (ld, up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    await ask(ld.port, 'now.example', '127.0.0.1');
    await secondStarts(stored + 1);
    s.address = '203.0.113.6';
    s.ttl = 60;
    const stale = await ask(ld.port, 'now.example', '127.0.0.1');
    assert.deepEqual([stale.rcode, addressOf(stale), answerTtls(stale)], [0, '203.0.113.1', [30]]);
    await eventually(() => metric('cache_stores_total') === 2, 'the refresh stored its answer');
    assert.equal(addressOf(await ask(ld.port, 'now.example', '127.0.0.1')), '203.0.113.6');
    assert.equal(up.requests.length, 2);
    assert.equal(metric('cache_stale_served_total'), 1);
  });
});

test('a refresh that lands within staleClientTimeout answers the client itself', T, async () => {
  await withScript({}, async (ld, up, s) => {
    const stored = await secondStarts();
    await ask(ld.port, 'quick.example', '127.0.0.1');
    await secondStarts(stored + 1);
    s.mode = 'slow';
    s.delayMs = 50;
    s.address = '203.0.113.5';
    const m = await ask(ld.port, 'quick.example', '127.0.0.1');
    assert.deepEqual([m.rcode, addressOf(m), answerTtls(m)], [0, '203.0.113.5', [1]]);
    assert.equal(ld.server.metrics.get('cache_stale_served_total'), 0);
    assert.equal(up.requests.length, 2);
  });
});

test('negative answers are not served stale past their own TTL; staleTtl bounds how long a positive one is', T, async () => {
  await withScript({ negativeTtl: 1, staleTtl: 1, staleRefreshInterval: 0 }, async (ld, _up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    assert.equal((await ask(ld.port, 'nx.neg.example', '127.0.0.1')).rcode, 3);
    assert.equal((await ask(ld.port, 'pos.example', '127.0.0.1')).rcode, 0);
    await secondStarts(stored + 1);
    s.mode = 'servfail';
    assert.equal((await ask(ld.port, 'nx.neg.example', '127.0.0.1')).rcode, 2, 'the expired NXDOMAIN is not served stale');
    const stale = await ask(ld.port, 'pos.example', '127.0.0.1');
    assert.deepEqual([stale.rcode, answerTtls(stale)], [0, [30]], 'expired 0 s ago: within staleTtl 1');
    await secondStarts(stored + 2);
    assert.equal((await ask(ld.port, 'pos.example', '127.0.0.1')).rcode, 2, 'expired 1 s ago: past staleTtl 1');
    assert.equal(metric('cache_stale_served_total'), 1);
  });
});

test('staleTtl 0 turns serve-stale off: a failing refresh is a SERVFAIL', T, async () => {
  await withScript({ staleTtl: 0 }, async (ld, _up, s) => {
    const stored = await secondStarts();
    await ask(ld.port, 'off.example', '127.0.0.1');
    await secondStarts(stored + 1);
    s.mode = 'silent';
    assert.equal((await ask(ld.port, 'off.example', '127.0.0.1')).rcode, 2);
    assert.equal(ld.server.metrics.get('cache_stale_served_total'), 0);
  });
});

test('a traced query: the stale answer says why in a note and in the stale slot; answered by the cache', T, async () => {
  // A context run through the server's own engine, as the transports run one.
  await withScript({ staleRefreshInterval: 30 }, async (ld, _up, s) => {
    const stored = await secondStarts();
    await ask(ld.port, 'why.example', '127.0.0.1');
    await secondStarts(stored + 1);
    s.mode = 'servfail';
    await ask(ld.port, 'why.example', '127.0.0.1');
    const ctx = new QueryContext(rawQuery('why.example', 1, { id: 7 }), { address: '127.0.0.1', port: 1, family: 'IPv4' }, 'udp', performance.now());
    ctx.tracing = true;
    await ld.server.engine.run(ctx);
    assert.deepEqual([ctx.answeredBy, ctx.get('stale')], ['cache', 'a refresh failed less than 30 s ago']);
    assert.ok(ctx.trace!.some((n) => n.startsWith('cache: stale answer, TTL 30')), ctx.trace!.join('\n'));
  });
});

test('--workers 2: each worker serves its own stale entries; none breaks', T, async () => {
  const s = new Script();
  const up = await TestUpstream.start(s.handler);
  const files = writeConfig({ config: { upstreams: [up.address], watch: false, answerMemo: false, forward: { timeout: 200, deadline: 400 }, pipeline: ['decode', { cache: { staleRefreshInterval: 30 } }, 'forward'] } });
  const served = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(served);
    // Each worker caches what it was asked (the kernel spreads the queries over both).
    for (let i = 0; i < 20; i++) assert.equal((await ask(port, 'workers.example', '127.0.0.1')).rcode, 0);
    // TTL 1 by each worker's own clock: expired everywhere 2 s later.
    await sleep(2100);
    s.mode = 'silent';
    let stale = 0;
    for (let i = 0; i < 20; i++) {
      const m = await ask(port, 'workers.example', '127.0.0.1');
      // A worker that was never asked has nothing stale to give: SERVFAIL there.
      if (m.rcode === 2) continue;
      assert.deepEqual([m.rcode, addressOf(m), answerTtls(m)], [0, '203.0.113.1', [30]]);
      stale++;
    }
    assert.ok(stale > 0, 'stale answers served');
    assert.equal(served.child.exitCode, null, 'still serving');
    served.child.kill('SIGTERM');
    assert.equal(await served.exit, 0);
  } finally {
    served.child.kill('SIGKILL');
    await up.close();
  }
});

/**
 * A user stage after the cache that, while `globalThis.linednsTestPoison` is true, leaves a
 * cacheable answer the cache cannot store (no template): store() throws in the cache's refresh
 * callbacks, where no engine catches it.
 */
const POISON = 'export default () => ({ name: "poison", async handle(ctx, next) { await next(); if (globalThis.linednsTestPoison === true && ctx.response !== null) ctx.set("cacheable", { local: false, template: null, response: ctx.response }); } });\n';
const poisoned = globalThis as { linednsTestPoison?: boolean };

for (const [what, cache] of [
  ['a refresh the client waits for', { staleRefreshInterval: 0 }],
  ['a background refresh (staleClientTimeout 0)', { staleRefreshInterval: 0, staleClientTimeout: 0 }],
  ['a prefetch', { prefetch: 1, prefetchPercent: 90 }],
] as const) {
  test(`${what} that throws while storing is counted and logged, not an unhandled rejection; the client is answered`, T, async () => {
    const s = new Script();
    const prefetching = 'prefetch' in cache;
    s.ttl = prefetching ? 2 : 1;
    const files = { config: { answerMemo: false, forward: { timeout: 200, deadline: 400 }, pipeline: ['decode', { cache }, './poison.js', 'forward'] }, extra: { 'poison.js': POISON } };
    await withUpstream(s.handler, files, async (ld, up) => {
      const metric = (n: string): number => ld.server.metrics.get(n);
      const stored = await secondStarts();
      assert.equal(addressOf(await ask(ld.port, 'poison.example', '127.0.0.1')), '203.0.113.1');
      await secondStarts(stored + 1); // expired (TTL 1), or due for a prefetch (TTL 2)
      poisoned.linednsTestPoison = true;
      try {
        s.address = '203.0.113.2';
        const r = await ask(ld.port, 'poison.example', '127.0.0.1');
        assert.equal(r.rcode, 0);
        assert.equal(addressOf(r), '203.0.113.1', prefetching ? 'the cached answer' : 'the stale answer, as the refresh could not be kept');
        await eventually(() => metric('cache_refresh_errors_total') === 1, 'the throw counted');
        assert.equal(up.requests.length, 2, 'the refresh was sent');
      } finally {
        poisoned.linednsTestPoison = false;
      }
    });
  });
}

test('ctx.fork() and next(fork): the later stages run on the copy; the client context is left as it was', async () => {
  const raw = rawQuery('fork.example', 1, { id: 9 });
  const ctx = new QueryContext(raw, { address: '127.0.0.1', port: 1, family: 'IPv4' }, 'udp', performance.now());
  const seen: QueryContext[] = [];
  let fork: QueryContext | null = null;
  const handler = compose([
    {
      name: 'first',
      handle(c) {
        c.query = parseQuery(c.raw) as ParsedQuery;
        c.set('stale', 'before the fork');
        fork = c.fork();
        return;
      },
    },
  ]);
  await handler(ctx);
  const f = fork as QueryContext | null;
  assert.ok(f !== null);
  assert.notEqual(f.raw, ctx.raw, 'the question is copied');
  assert.deepEqual([f.raw.equals(ctx.raw), f.query!.name, f.client, f.transport, f.receivedAt], [true, 'fork.example', ctx.client, 'udp', ctx.receivedAt]);
  assert.equal(f.get('stale'), 'before the fork', 'the slots filled so far');
  // next(fork) in a two-stage chain: the second stage answers the fork only.
  const chain = compose([
    { name: 'a', handle: (c, next) => next(c === ctx ? f : undefined) },
    {
      name: 'b',
      handle(c) {
        seen.push(c);
        c.respond('b', Buffer.from('x'));
        c.set('stale', 'after');
      },
    },
  ]);
  await chain(ctx);
  assert.deepEqual(seen, [f]);
  assert.deepEqual([ctx.response, ctx.answeredBy, ctx.get('stale')], [null, '', 'before the fork']);
  assert.deepEqual([f.answeredBy, f.get('stale')], ['b', 'after']);
});
