// Prefetch on real loopback sockets: an answer asked `prefetch` times within its lifetime is
// refreshed in the background once prefetchPercent of its TTL is left, one refresh at a time.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CheckedMessage } from './helpers/packets.js';
import { withUpstream, type Running } from './helpers/server.js';
import { simpleHandler, TestUpstream, type UpstreamHandler, type UpstreamReply } from './helpers/upstream.js';
import { ask } from './helpers/split.js';
import { eventually, secondStarts } from './helpers/seconds.js';

const T = { timeout: 30_000 };

/** An upstream answering A with `address`, TTL 2, after `delayMs` when set; SERVFAIL when told. */
class Script {
  address = '203.0.113.1';
  delayMs = 0;
  servfail = false;
  readonly handler: UpstreamHandler = (req): UpstreamReply => {
    if (this.servfail) return { flags: 0x8180 | 2 };
    const answer = simpleHandler(this.address, 2)(req) as Exclude<UpstreamReply, Promise<unknown>>;
    return this.delayMs === 0 ? answer : sleep(this.delayMs).then(() => answer);
  };
}

async function withScript(cache: Record<string, unknown>, body: (ld: Running, up: TestUpstream, s: Script) => Promise<void>): Promise<void> {
  const s = new Script();
  await withUpstream(s.handler, { config: { answerMemo: false, forward: { timeout: 1000, deadline: 2000 }, pipeline: ['decode', { cache }, 'forward'] } }, (ld, up) => body(ld, up, s));
}

const addressOf = (m: CheckedMessage): string => [...m.records.find((r) => r.section === 0 && r.type === 1)!.rdata].join('.');
const asked = (up: TestUpstream, name: string): number => up.requests.filter((r) => r.packet.questions?.[0]?.name === name).length;

test('an answer asked N times is refreshed once, in the background, when prefetchPercent of its TTL is left', T, async () => {
  // TTL 2 and 50 %: the refresh is due in the entry's last second (1 of 2 s left).
  await withScript({ prefetch: 3, prefetchPercent: 50 }, async (ld, up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    await ask(ld.port, 'busy.example', '127.0.0.1');
    await ask(ld.port, 'rare.example', '127.0.0.1');
    for (let i = 0; i < 3; i++) assert.equal(addressOf(await ask(ld.port, 'busy.example', '127.0.0.1')), '203.0.113.1');
    // 2 s of 2 left: hits enough, but not due yet (unless the machine was slow to ask them).
    const early = metric('cache_prefetches_total');
    await secondStarts(stored + 1);
    s.address = '203.0.113.2';
    s.delayMs = 200;
    // Due: the client is answered from the cache; the refresh runs behind it.
    const hit = await ask(ld.port, 'busy.example', '127.0.0.1');
    assert.equal(addressOf(hit), '203.0.113.1');
    assert.deepEqual(hit.records.map((r) => r.ttl), [1]);
    // More hits while the refresh is under way start no second one.
    for (let i = 0; i < 3; i++) await ask(ld.port, 'busy.example', '127.0.0.1');
    assert.equal(metric('cache_prefetches_total'), 1);
    assert.equal(early, 0, 'not before its last second');
    await eventually(() => metric('cache_stores_total') === 3, 'the prefetched answer stored');
    assert.equal(asked(up, 'busy.example'), 2, 'one refresh');
    s.delayMs = 0;
    const after = await ask(ld.port, 'busy.example', '127.0.0.1');
    assert.equal(addressOf(after), '203.0.113.2', 'the refreshed answer replaced the entry');
    assert.equal(asked(up, 'busy.example'), 2, 'answered from the cache');
    // Asked once in its lifetime: never prefetched, even in its last second.
    await ask(ld.port, 'rare.example', '127.0.0.1');
    assert.equal(asked(up, 'rare.example'), 1);
    assert.equal(metric('cache_prefetches_total'), 1);
    assert.equal(metric('cache_stale_served_total'), 0);
  });
});

test('prefetch 0 (the default): an often asked answer expires and is asked again as a miss', T, async () => {
  await withScript({ prefetchPercent: 50 }, async (ld, up) => {
    const stored = await secondStarts();
    for (let i = 0; i < 5; i++) await ask(ld.port, 'plain.example', '127.0.0.1');
    await secondStarts(stored + 1);
    for (let i = 0; i < 5; i++) await ask(ld.port, 'plain.example', '127.0.0.1');
    assert.equal(ld.server.metrics.get('cache_prefetches_total'), 0);
    assert.equal(asked(up, 'plain.example'), 1);
    await secondStarts(stored + 2);
    await ask(ld.port, 'plain.example', '127.0.0.1');
    assert.equal(asked(up, 'plain.example'), 2);
  });
});

test('a prefetch that fails leaves the entry served, and is not tried again within staleRefreshInterval', T, async () => {
  await withScript({ prefetch: 1, prefetchPercent: 50 }, async (ld, up, s) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    const stored = await secondStarts();
    await ask(ld.port, 'flaky.example', '127.0.0.1');
    await secondStarts(stored + 1);
    s.servfail = true;
    assert.equal(addressOf(await ask(ld.port, 'flaky.example', '127.0.0.1')), '203.0.113.1');
    await eventually(() => asked(up, 'flaky.example') === 2, 'the prefetch asked');
    await sleep(100); // its SERVFAIL lands
    for (let i = 0; i < 3; i++) assert.equal(addressOf(await ask(ld.port, 'flaky.example', '127.0.0.1')), '203.0.113.1');
    assert.equal(metric('cache_prefetches_total'), 1);
    assert.equal(asked(up, 'flaky.example'), 2);
  });
});
