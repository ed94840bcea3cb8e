// The UDP answer memo: a repeat of the same query from the same client within a second is answered
// without the pipeline; these tests check it never changes what a client would otherwise get.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { wholeSeconds } from '../src/lib/clock.js';
import { answerData, buildQuery, decode, udpExchange } from './helpers/client.js';
import { startLineDns, type Running } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';

const records = [
  { name: 'local.memo.test', type: 'A', rdata: '10.0.0.1' },
  { name: 'split.memo.test', type: 'A', rdata: '10.0.0.2', labels: ['line2'] },
  { name: 'split.memo.test', type: 'A', rdata: '10.0.0.3', labels: ['line3'] },
];
const smartLine = { line2: ['127.0.0.2/32'], line3: ['127.0.0.3/32'] };

type Reply = ReturnType<typeof decode>;
const ttlOf = (p: Reply): number => (p.answers?.[0] as { ttl?: number } | undefined)?.ttl ?? -1;
const dataOf = (p: Reply): unknown[] => answerData(p);

async function ask(port: number, name: string, opts: { id?: number; from?: string; edns?: { dnssecOk?: boolean } } = {}): Promise<Buffer> {
  const reply = await udpExchange(port, buildQuery({ name }, { id: opts.id, edns: opts.edns }), { from: opts.from });
  assert.ok(reply, `a reply for ${name}`);
  return reply;
}

/** Waits until a second of the server's clock has just begun, so a few queries share it. */
async function startOfSecond(): Promise<void> {
  const s = wholeSeconds(performance.now());
  while (wholeSeconds(performance.now()) === s) await new Promise((r) => setTimeout(r, 2));
}

describe('answer memo', () => {
  let up: TestUpstream;
  let ld: Running;
  const memoHits = (): number => ld.server.metrics.get('udp_memo_hits_total');

  before(async () => {
    up = await TestUpstream.start(simpleHandler('203.0.113.9', 300));
    ld = await startLineDns({ config: { upstreams: [`127.0.0.1:${up.port}`], allow: ['127.0.0.0/8'] }, records, smartLine });
  });
  after(async () => {
    await ld.close();
    await up.close();
  });

  test('a repeat gets the same octets but its own ID, and is counted as a cache hit', async () => {
    await ask(ld.port, 'cached.memo.test'); // fills the cache
    const hits0 = ld.server.metrics.get('cache_hits_total');
    const memo0 = memoHits();
    const first = await ask(ld.port, 'cached.memo.test', { id: 0x1111 });
    const second = await ask(ld.port, 'cached.memo.test', { id: 0x2222 });
    assert.equal(first.readUInt16BE(0), 0x1111);
    assert.equal(second.readUInt16BE(0), 0x2222);
    // Same second (TTLs equal): the same octets after the ID. Across a second boundary the TTL
    // may differ by one, which is what the memo must not hide.
    const a = decode(first);
    const b = decode(second);
    if (ttlOf(a) === ttlOf(b)) assert.deepEqual(second.subarray(2), first.subarray(2));
    assert.equal(ld.server.metrics.get('cache_hits_total') - hits0, 2, 'memo answers count as cache hits');
    assert.equal(up.requests.filter((r) => r.packet.questions![0]!.name === 'cached.memo.test').length, 1);
    assert.ok(memoHits() - memo0 <= 1);
  });

  test('many repeats within a second are answered from it', async () => {
    await ask(ld.port, 'many.memo.test');
    await startOfSecond();
    const memo0 = memoHits();
    for (let i = 0; i < 10; i++) await ask(ld.port, 'many.memo.test');
    assert.ok(memoHits() - memo0 >= 8, `memo hits ${memoHits() - memo0}`);
  });

  test('each client keeps its own smart-line view, and each spelling its own question', async () => {
    for (let round = 0; round < 3; round++) {
      const two = decode(await ask(ld.port, 'split.memo.test', { from: '127.0.0.2' }));
      const three = decode(await ask(ld.port, 'split.memo.test', { from: '127.0.0.3' }));
      assert.deepEqual(dataOf(two), ['10.0.0.2']);
      assert.deepEqual(dataOf(three), ['10.0.0.3']);
      const upper = decode(await ask(ld.port, 'LOCAL.Memo.TEST'));
      const lower = decode(await ask(ld.port, 'local.memo.test'));
      assert.equal(upper.questions?.[0]?.name, 'LOCAL.Memo.TEST');
      assert.equal(lower.questions?.[0]?.name, 'local.memo.test');
    }
  });

  test('EDNS and DO are part of the query: each form gets its own answer', async () => {
    for (let round = 0; round < 2; round++) {
      const plain = decode(await ask(ld.port, 'local.memo.test'));
      const edns = decode(await ask(ld.port, 'local.memo.test', { edns: { dnssecOk: true } }));
      assert.equal((plain.additionals ?? []).length, 0);
      assert.equal((edns.additionals ?? []).filter((r) => r.type === 'OPT').length, 1);
    }
  });

  test('TTLs still age from one second to the next', async () => {
    await ask(ld.port, 'aging.memo.test');
    const before = ttlOf(decode(await ask(ld.port, 'aging.memo.test')));
    await new Promise((r) => setTimeout(r, 2100));
    const later = ttlOf(decode(await ask(ld.port, 'aging.memo.test')));
    assert.ok(later <= before - 2, `TTL ${before} then ${later}`);
  });

  test('a reload is seen by the very next query', async () => {
    await startOfSecond();
    assert.deepEqual(dataOf(decode(await ask(ld.port, 'local.memo.test'))), ['10.0.0.1']);
    assert.deepEqual(dataOf(decode(await ask(ld.port, 'local.memo.test'))), ['10.0.0.1']);
    writeFileSync(join(ld.dir, 'records.json'), JSON.stringify([{ name: 'local.memo.test', type: 'A', rdata: '10.0.0.99' }, ...records.slice(1)]));
    assert.equal(await ld.server.reloadFromFile(), true);
    assert.deepEqual(dataOf(decode(await ask(ld.port, 'local.memo.test'))), ['10.0.0.99']);
  });
});

describe('answer memo off', () => {
  for (const [what, config, extra] of [
    ['when the config says so', { answerMemo: false }, {}],
    ['with a rate limit (every query must be counted)', { rateLimit: { qps: 1000, burst: 1000 } }, {}],
    [
      'with a user stage (its behaviour is unknown)',
      { pipeline: ['decode', './observe.js', 'cache', 'forward'] },
      { 'observe.js': 'export default () => ({ name: "observe", handle(ctx, next) { return next(); } });\n' },
    ],
  ] as const) {
    test(what, async (t) => {
      const up = await TestUpstream.start(simpleHandler());
      const ld = await startLineDns({ config: { upstreams: [`127.0.0.1:${up.port}`], ...config }, extra });
      t.after(async () => {
        await ld.close();
        await up.close();
      });
      for (let i = 0; i < 5; i++) await ask(ld.port, 'off.memo.test');
      assert.equal(ld.server.metrics.get('udp_memo_hits_total'), 0);
      assert.equal(ld.server.metrics.get('cache_hits_total'), 4);
    });
  }
});
