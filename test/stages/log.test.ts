// The log stage: one JSON line per reply with the fields an operator needs, memo hits and
// truncated replies included; sampling, filters, level, SIGUSR1 reopen, and `unanswered`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { tcpExchange, udpExchange } from '../helpers/client.js';
import { startLineDns, type Running, type TestFiles } from '../helpers/server.js';
import { simpleHandler, TestUpstream } from '../helpers/upstream.js';
import { mustParse, rawQuery, RD, TC } from '../helpers/packets.js';
import { SPLIT, INSIDE } from '../helpers/split.js';
import { wholeSeconds } from '../../src/lib/clock.js';

interface Line {
  level: number;
  time: number;
  client: string;
  port: number;
  transport: string;
  id: number;
  name: string;
  type: string;
  rcode: string;
  answers: number;
  by: string;
  lines?: string[];
  upstream?: string;
  upstreamMs?: number;
  stale?: string;
  tc: boolean;
  us: number;
  size: number;
}

const bigTxt = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(100));

async function withLog(files: TestFiles, body: (ld: Running, up: TestUpstream, lines: () => Promise<Line[]>) => Promise<void>): Promise<void> {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({ ...files, config: { upstreams: [`127.0.0.1:${up.port}`], ...files.config } });
  const file = join(ld.dir, 'queries.log');
  let closed = false;
  const lines = async (): Promise<Line[]> => {
    // Closing the stage flushes the buffered lines.
    if (!closed) await ld.close();
    closed = true;
    await new Promise((r) => setTimeout(r, 50));
    return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line) : [];
  };
  try {
    await body(ld, up, lines);
  } finally {
    if (!closed) await ld.close();
    await up.close();
  }
}

async function startOfSecond(): Promise<void> {
  const s = wholeSeconds(performance.now());
  while (wholeSeconds(performance.now()) === s) await new Promise((r) => setTimeout(r, 2));
}

test('one line per reply: local, memo hit, upstream with its latency, NXDOMAIN, truncated, TCP, lines', async () => {
  const files: TestFiles = {
    ...SPLIT,
    config: { pipeline: [{ log: { file: 'queries.log' } }, 'decode', 'cache', 'records', 'smartline', 'forward'] },
    records: [...SPLIT.records, { name: 'a.test', type: 'A', rdata: '192.0.2.1' }, { name: 'big.test', type: 'TXT', rdata: bigTxt }],
  };
  await withLog(files, async (ld, up, lines) => {
    await startOfSecond();
    await udpExchange(ld.port, rawQuery('a.test', 1, { id: 1 }));
    await udpExchange(ld.port, rawQuery('a.test', 1, { id: 2 })); // the same octets after the ID: a memo hit
    await udpExchange(ld.port, rawQuery('up.example', 1, { id: 3 }));
    await udpExchange(ld.port, rawQuery('nx.example', 1, { id: 4 }));
    const cut = mustParse(await udpExchange(ld.port, rawQuery('big.test', 16, { id: 5 })));
    assert.ok(cut.flags & TC);
    await tcpExchange(ld.port, [rawQuery('big.test', 16, { id: 6 })]);
    await udpExchange(ld.port, rawQuery('app.split.example', 1, { id: 7 }), { from: INSIDE });
    assert.equal(ld.server.metrics.get('udp_memo_hits_total'), 1);
    assert.notEqual(ld.server.engine.memo, null, 'the log stage keeps the memo on');
    const got = await lines();
    assert.equal(got.length, 7, JSON.stringify(got));
    const by = (id: number): Line => got.find((l) => l.id === id)!;
    assert.deepEqual([by(1).name, by(1).type, by(1).rcode, by(1).answers, by(1).by, by(1).transport, by(1).client], ['a.test', 'A', 'NOERROR', 1, 'records', 'udp', '127.0.0.1']);
    assert.ok(by(1).port > 0 && by(1).us >= 0 && by(1).size > 12 && Math.abs(by(1).time - Date.now()) < 10_000);
    assert.equal(by(2).by, 'memo', 'the memo hit is logged as such');
    assert.deepEqual([by(3).by, by(3).upstream, by(3).rcode], ['forward', `127.0.0.1:${up.port}`, 'NOERROR']);
    assert.ok(typeof by(3).upstreamMs === 'number' && by(3).upstreamMs! >= 0);
    assert.deepEqual([by(4).rcode, by(4).level], ['NXDOMAIN', 30], 'NXDOMAIN is an answer, logged at info');
    assert.deepEqual([by(5).tc, by(5).answers], [true, 0]);
    assert.deepEqual([by(6).transport, by(6).tc, by(6).answers], ['tcp', false, 1]);
    assert.deepEqual([by(7).lines, by(7).by], [['internal'], 'smartline']);
  });
});

test('a stale answer from the cache is logged with why it was stale; a fresh one without the field', async () => {
  const files: TestFiles = {
    config: { answerMemo: false, pipeline: [{ log: { file: 'queries.log' } }, 'decode', { cache: { staleClientTimeout: 0 } }, { forward: { timeout: 200, deadline: 400 } }] },
  };
  await withLog(files, async (ld, up, lines) => {
    up.handler = simpleHandler('203.0.113.1', 1);
    await startOfSecond();
    await udpExchange(ld.port, rawQuery('old.example', 1, { id: 1 }));
    // Past its 1 s TTL (whole seconds) and with the upstream silent: served stale.
    await startOfSecond();
    await startOfSecond();
    up.handler = () => null;
    await udpExchange(ld.port, rawQuery('old.example', 1, { id: 2 }));
    assert.equal(ld.server.metrics.get('cache_stale_served_total'), 1);
    const got = await lines();
    const by = (id: number): Line => got.find((l) => l.id === id)!;
    assert.deepEqual([by(1).by, by(1).stale], ['forward', undefined]);
    assert.deepEqual([by(2).by, by(2).rcode, by(2).stale], ['cache', 'NOERROR', 'staleClientTimeout is 0: refreshing in the background']);
  });
});

test('sampling, names and rcodes filters, and level "warn" (failures only)', async () => {
  const cases: { log: Record<string, unknown>; expect: number[] }[] = [
    { log: { sample: 5 }, expect: [5, 10, 15, 20] },
    { log: { names: ['b.test'] }, expect: [2, 4, 7, 9, 12, 14, 17, 19] },
    { log: { rcodes: ['REFUSED'] }, expect: [3, 4, 8, 9, 13, 14, 18, 19] },
    { log: { level: 'warn' }, expect: [3, 4, 8, 9, 13, 14, 18, 19] },
  ];
  for (const c of cases) {
    const files: TestFiles = {
      config: { pipeline: [{ log: { file: 'queries.log', ...c.log } }, 'decode', 'records'] },
      records: [
        { name: 'a.test', type: 'A', rdata: '192.0.2.1' },
        { name: 'b.test', type: 'A', rdata: '192.0.2.2' },
      ],
    };
    await withLog(files, async (ld, _up, lines) => {
      // NOERROR, NOERROR, REFUSED (no stage answers), REFUSED under b.test, NOERROR.
      const names = ['a.test', 'b.test', 'none.test', 'x.b.test', 'a.test'];
      for (let id = 1; id <= 20; id++) await udpExchange(ld.port, rawQuery(names[(id - 1) % 5]!, 1, { id }));
      const got = await lines();
      assert.deepEqual(got.map((l) => l.id), c.expect, JSON.stringify(c.log));
    });
  }
});

test('SIGUSR1 reopens the file (logrotate moves it away first)', async () => {
  const files: TestFiles = { config: { pipeline: [{ log: { file: 'queries.log' } }, 'decode', 'records'] }, records: [{ name: 'a.test', type: 'A', rdata: '192.0.2.1' }] };
  await withLog(files, async (ld, _up, lines) => {
    await udpExchange(ld.port, rawQuery('a.test', 1, { id: 1 }));
    await new Promise((r) => setTimeout(r, 50)); // the file is opened asynchronously
    // Move the file as logrotate does, then signal: the line still buffered goes to the old file.
    renameSync(join(ld.dir, 'queries.log'), join(ld.dir, 'queries.log.1'));
    process.emit('SIGUSR1');
    await new Promise((r) => setTimeout(r, 100));
    await udpExchange(ld.port, rawQuery('a.test', 28, { id: 2 }));
    const fresh = await lines();
    const rotated = readFileSync(join(ld.dir, 'queries.log.1'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
    assert.deepEqual([rotated.map((l) => l.id), fresh.map((l) => l.id)], [[1], [2]]);
  });
});

test('unanswered: a pipeline without forward answers what it cannot REFUSED, or NXDOMAIN as the original logger', async () => {
  for (const [unanswered, rcode] of [[undefined, 5], ['nxdomain', 3]] as const) {
    const files: TestFiles = { config: { pipeline: [{ log: { file: 'queries.log' } }, 'decode', 'records'], ...(unanswered ? { unanswered } : {}) } };
    await withLog(files, async (ld, _up, lines) => {
      const reply = mustParse(await udpExchange(ld.port, rawQuery('anything.test', 1, { id: 9, flags: RD })));
      assert.equal(reply.rcode, rcode);
      const [l] = await lines();
      assert.deepEqual([l!.by, l!.rcode], ['unanswered', rcode === 5 ? 'REFUSED' : 'NXDOMAIN']);
    });
  }
});

test("docs/stages/log.md's example line is what the stage writes, field by field", async () => {
  const doc = readFileSync(new URL('../../../docs/stages/log.md', import.meta.url), 'utf8');
  const m = /<!-- log-line -->\n```text\n(.+)\n```/.exec(doc);
  assert.ok(m, 'the example line was not found');
  const shown = JSON.parse(m[1]!) as Record<string, unknown>;
  await withLog({ config: { pipeline: [{ log: { file: 'queries.log' } }, 'decode', 'forward'] } }, async (ld, up, lines) => {
    await udpExchange(ld.port, rawQuery('www.example.com', 1, { id: 20931, opt: { udpSize: 1232 } }));
    const [real] = (await lines()) as unknown as Record<string, unknown>[];
    assert.ok(real);
    assert.deepEqual(Object.keys(real), Object.keys(shown), 'the same fields in the same order');
    // What differs from run to run: when, from which port, with which ID, how fast, how large.
    const varying = new Set(['time', 'port', 'id', 'us', 'upstreamMs', 'size', 'upstream']);
    for (const [k, v] of Object.entries(shown)) {
      if (varying.has(k)) assert.equal(typeof real[k], typeof v, k);
      else assert.deepEqual(real[k], v, k);
    }
    assert.equal(real.upstream, `127.0.0.1:${up.port}`);
  });
});

test('a sampling log beside an observer that wants every reply: each gets what it asked for', async () => {
  const qlog = `export default () => ({ name: 'qlog', observesOnly: true, seen: 0, handle(ctx, next) { return next(); }, observe() { this.seen++; } });\n`;
  const files: TestFiles = {
    config: { pipeline: [{ log: { file: 'queries.log', sample: 4 } }, './qlog.js', 'decode', 'records'] },
    records: [{ name: 'a.test', type: 'A', rdata: '192.0.2.1' }],
    extra: { 'qlog.js': qlog },
  };
  await withLog(files, async (ld, _up, lines) => {
    for (let id = 1; id <= 12; id++) await udpExchange(ld.port, rawQuery('a.test', 1, { id }));
    const observer = ld.server.engine.stages.find((s) => s.name === 'qlog') as unknown as { seen: number };
    assert.equal(observer.seen, 12, 'the other observer saw every reply');
    assert.deepEqual((await lines()).map((l) => l.id), [4, 8, 12], 'the log kept its 1 in 4');
  });
});
