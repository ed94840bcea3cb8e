// Reply hooks and observers (src/core/context.ts onReply/rewriteQuery, Stage.observe): an
// observer sees every reply that leaves (memo hits, truncated UDP, TCP), a rewrite is invisible
// to the client, and without hooks the rendered buffer itself is what goes out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { buildQuery, tcpExchange, udpExchange } from './helpers/client.js';
import { startLineDns, type Running } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import { mustParse, rawQuery, RD, TC, QR } from './helpers/packets.js';
import { wholeSeconds } from '../src/lib/clock.js';
import type { ReplyInfo } from '../src/core/stage.js';

/** A query log: keeps what it observes; declares it only observes, so the memo stays on. */
const QLOG = `export default () => ({
  name: 'qlog',
  observesOnly: true,
  seen: [],
  handle(ctx, next) { return next(); },
  observe(reply) { this.seen.push(reply); },
});
`;

/** Asks foo.test whenever www.example.org is asked (any case): the example of docs/stages.md. */
const REWRITE = readFileSync(new URL('../../docs/examples/rewrite-name.js', import.meta.url), 'utf8');
const QUERY_LOG = readFileSync(new URL('../../docs/examples/query-log.js', import.meta.url), 'utf8');

/** Records the reply the pipeline left in ctx.response; optionally adds a hook that only looks. */
const SPY = `export default () => ({
  name: 'spy',
  rendered: [],
  hooked: 0,
  handle(ctx, next) {
    if (ctx.query.name.startsWith('hooked.')) ctx.onReply((c, wire) => { this.hooked++; return wire; });
    const done = () => { this.rendered.push(ctx.response); };
    const r = next();
    if (r) return r.then(done);
    done();
  },
});
`;

function stage<T>(ld: Running, name: string): T {
  const s = ld.server.engine.stages.find((x) => x.name === name);
  assert.ok(s, `stage ${name}`);
  return s as unknown as T;
}

async function startOfSecond(): Promise<void> {
  const s = wholeSeconds(performance.now());
  while (wholeSeconds(performance.now()) === s) await new Promise((r) => setTimeout(r, 2));
}

const bigTxt = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(100));

test('an observer sees every reply: a memo hit (memo kept on), a truncated UDP reply, TCP', async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({
    config: { upstreams: [`127.0.0.1:${up.port}`], pipeline: ['decode', './qlog.js', 'records', 'cache', 'forward'] },
    records: [
      { name: 'a.test', type: 'A', rdata: '192.0.2.1' },
      { name: 'big.test', type: 'TXT', rdata: bigTxt },
    ],
    extra: { 'qlog.js': QLOG },
  });
  t.after(async () => {
    await ld.close();
    await up.close();
  });
  assert.notEqual(ld.server.engine.memo, null, 'an observe-only stage keeps the answer memo on');
  const seen = stage<{ seen: ReplyInfo[] }>(ld, 'qlog').seen;

  // Twice within one second: the second is a memo hit, and the observer sees it as one.
  await startOfSecond();
  const first = await udpExchange(ld.port, rawQuery('a.test', 1, { id: 0x1111, flags: RD }));
  const second = await udpExchange(ld.port, rawQuery('a.test', 1, { id: 0x2222, flags: RD }));
  assert.ok(first && second);
  assert.equal(ld.server.metrics.get('udp_memo_hits_total'), 1, 'the repeat came from the memo');
  assert.equal(seen.length, 2);
  for (const [i, r] of seen.entries()) {
    assert.equal(r.transport, 'udp');
    assert.equal(r.client.address, '127.0.0.1');
    assert.ok(r.client.port > 0);
    assert.equal(r.id, i === 0 ? 0x1111 : 0x2222);
    assert.equal(r.name, 'a.test');
    assert.equal(r.qtype, 1);
    assert.equal(r.rcode, 0);
    assert.equal(r.answers, 1);
    assert.equal(r.answeredBy, 'records');
    assert.equal(r.truncated, false);
    assert.equal(r.memo, i === 1);
    assert.equal(r.size, (i === 0 ? first : second)!.length);
    assert.ok(r.durationUs >= 0 && r.durationUs < 5_000_000, `duration ${r.durationUs}`);
    assert.ok(Math.abs(r.time - Date.now()) < 5000);
  }

  // No EDNS: the TXT set is over 512 octets, so it leaves truncated.
  const cut = mustParse(await udpExchange(ld.port, rawQuery('big.test', 16, { id: 0x3333, flags: RD })));
  assert.ok(cut.flags & TC);
  const r3 = seen[2]!;
  assert.deepEqual([r3.name, r3.qtype, r3.truncated, r3.answers, r3.memo, r3.answeredBy], ['big.test', 16, true, 0, false, 'records']);

  // The same over TCP: whole, and marked as TCP.
  const [whole] = await tcpExchange(ld.port, [rawQuery('big.test', 16, { id: 0x4444, flags: RD })]);
  assert.ok(whole && !(mustParse(whole).flags & TC));
  const r4 = seen[3]!;
  assert.deepEqual([r4.transport, r4.id, r4.truncated, r4.answers, r4.size], ['tcp', 0x4444, false, 1, whole.length]);

  // Errors are replies too: NXDOMAIN from upstream has its rcode.
  await udpExchange(ld.port, rawQuery('nx.example', 1, { id: 0x5555, flags: RD }));
  const r5 = seen[4]!;
  assert.deepEqual([r5.name, r5.rcode, r5.answeredBy, r5.memo], ['nx.example', 3, 'forward', false]);
});

test('a rewritten question: resolved as foo.test, the client sees its own question and names', async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({
    config: { upstreams: [`127.0.0.1:${up.port}`], pipeline: ['decode', './qlog.js', './rewrite.js', 'records', 'cache', 'forward'] },
    records: [
      { name: 'foo.test', type: 'CNAME', rdata: 'bar.test' },
      { name: 'bar.test', type: 'A', rdata: '192.0.2.7' },
    ],
    extra: { 'qlog.js': QLOG, 'rewrite.js': REWRITE },
  });
  t.after(async () => {
    await ld.close();
    await up.close();
  });
  assert.equal(ld.server.engine.memo, null, 'a stage that rewrites turns the memo off');
  for (const transport of ['udp', 'tcp'] as const) {
    // Mixed case and EDNS: the reply must echo the client's spelling and carry an OPT.
    const q = rawQuery('WwW.Example.ORG', 1, { id: 0xabcd, flags: RD, opt: { udpSize: 1232 } });
    const wire = transport === 'udp' ? await udpExchange(ld.port, q) : (await tcpExchange(ld.port, [q]))[0]!;
    const m = mustParse(wire, transport);
    assert.equal(m.id, 0xabcd);
    assert.ok(m.flags & QR);
    assert.equal(m.rcode, 0);
    const qEnd = m.questionEnd;
    assert.deepEqual(wire!.subarray(12, qEnd), q.subarray(12, qEnd), 'the question octets as the client sent them');
    const answers = m.records.filter((r) => r.section === 0);
    assert.deepEqual(
      answers.map((r) => [r.owner.toLowerCase(), r.type]),
      [
        ['www.example.org', 5],
        ['bar.test', 1],
      ],
    );
    // The first answer's owner points at the client's question: spelled as asked.
    assert.deepEqual([...wire!.subarray(qEnd, qEnd + 2)], [0xc0, 12]);
    assert.deepEqual([...answers[1]!.rdata], [192, 0, 2, 7]);
    assert.ok(m.opt, 'OPT kept');
  }
  assert.equal(up.requests.length, 0, 'answered locally as foo.test');
  const seen = stage<{ seen: ReplyInfo[] }>(ld, 'qlog').seen;
  assert.deepEqual(
    seen.map((r) => [r.transport, r.name, r.answeredBy, r.answers]),
    [
      ['udp', 'www.example.org', 'records', 2],
      ['tcp', 'www.example.org', 'records', 2],
    ],
    'outer stages and observers see the client question',
  );
});

test('without hooks the rendered reply buffer is the one sent; an observing hook sends it too', async (t) => {
  const up = await TestUpstream.start(simpleHandler('203.0.113.9'));
  const ld = await startLineDns({
    config: { upstreams: [`127.0.0.1:${up.port}`], pipeline: ['decode', './spy.js', 'records', 'cache', 'forward'] },
    records: [{ name: 'local.test', type: 'A', rdata: '192.0.2.1' }],
    extra: { 'spy.js': SPY },
  });
  t.after(async () => {
    await ld.close();
    await up.close();
  });
  const spy = stage<{ rendered: (Buffer | null)[]; hooked: number }>(ld, 'spy');
  const sock = ld.server.udp[0]!.socket;
  const sent: unknown[] = [];
  const realSend = sock.send.bind(sock) as (...args: unknown[]) => void;
  (sock as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
    sent.push(args[0]);
    realSend(...args);
  };
  for (const name of ['up.example', 'up.example', 'local.test', 'hooked.example']) {
    const reply = await udpExchange(ld.port, buildQuery({ name }));
    assert.ok(reply, name);
  }
  assert.equal(ld.server.metrics.get('cache_hits_total'), 1, 'the second up.example was a cache hit');
  assert.equal(spy.hooked, 1);
  assert.equal(sent.length, 4);
  for (let i = 0; i < 4; i++) assert.ok(sent[i] === spy.rendered[i], `reply ${i}: the very buffer the pipeline made, not a copy`);
});

test('the query-log example of docs/stages.md logs every reply and keeps the memo on', async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({
    config: { upstreams: [`127.0.0.1:${up.port}`], pipeline: ['decode', './query-log.js', 'records', 'cache', 'forward'] },
    records: [{ name: 'a.test', type: 'A', rdata: '192.0.2.1' }],
    extra: { 'query-log.js': QUERY_LOG },
  });
  t.after(async () => {
    await ld.close();
    await up.close();
  });
  assert.notEqual(ld.server.engine.memo, null);
  const lines: unknown[] = [];
  // The test server's logger is silent; catch what the stage hands it.
  (ld.server.logger as unknown as { info: (...a: unknown[]) => void }).info = (...a: unknown[]) => lines.push(a);
  await startOfSecond();
  for (let i = 0; i < 2; i++) assert.ok(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 7, flags: RD })));
  assert.equal(ld.server.metrics.get('observer_errors_total'), 0);
  assert.deepEqual(
    lines.map((a) => {
      const [o, msg] = a as [{ name: string; by: string; memo: boolean }, string];
      return [msg, o.name, o.by, o.memo];
    }),
    [
      ['reply', 'a.test', 'records', false],
      ['reply', 'a.test', 'records', true],
    ],
  );
});

/**
 * Inner: copies the reply in its hook; boom.test: a hook that throws; bad.test: an unusable
 * rewrite; twist.test: a rewrite, then a hook that throws.
 */
const INNER = `export default () => ({
  name: 'inner',
  made: null,
  handle(ctx, next) {
    if (ctx.query.name === 'boom.test') ctx.onReply(() => { throw new Error('boom'); });
    else if (ctx.query.name === 'bad.test') ctx.rewriteQuery('inner', Buffer.from([1, 2, 3]));
    else if (ctx.query.name === 'twist.test') {
      // Rewritten to a.test, then a hook that throws before the revert runs.
      const raw = ctx.raw;
      const to = Buffer.from('\\x01a\\x04test\\x00', 'latin1');
      ctx.rewriteQuery('inner', Buffer.concat([raw.subarray(0, 12), to, raw.subarray(ctx.query.questionEnd - 4)]));
      ctx.onReply(() => { throw new Error('after the rewrite'); });
    }
    else ctx.onReply((c, wire) => (this.made = Buffer.from(wire)));
    return next();
  },
});
`;
const OUTER = `export default () => ({
  name: 'outer',
  got: null,
  handle(ctx, next) {
    ctx.onReply((c, wire) => (this.got = wire));
    return next();
  },
});
`;

test('hooks run innermost first, each given what the one before returned; a throw is a SERVFAIL with the client question', async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({
    config: { upstreams: [`127.0.0.1:${up.port}`], pipeline: ['decode', './outer.js', './inner.js', 'records', 'cache', 'forward'] },
    records: [{ name: 'a.test', type: 'A', rdata: '192.0.2.1' }],
    extra: { 'outer.js': OUTER, 'inner.js': INNER },
  });
  t.after(async () => {
    await ld.close();
    await up.close();
  });
  const inner = stage<{ made: Buffer | null }>(ld, 'inner');
  const outer = stage<{ got: Buffer | null }>(ld, 'outer');
  const sock = ld.server.udp[0]!.socket;
  const sent: unknown[] = [];
  const realSend = sock.send.bind(sock) as (...args: unknown[]) => void;
  (sock as unknown as { send: (...args: unknown[]) => void }).send = (...args: unknown[]) => {
    sent.push(args[0]);
    realSend(...args);
  };
  assert.ok(await udpExchange(ld.port, rawQuery('a.test', 1, { flags: RD })));
  assert.ok(inner.made !== null && outer.got === inner.made, "the outer hook got the inner hook's buffer");
  assert.ok(sent[0] === inner.made, 'and that buffer was sent');

  for (const name of ['boom.test', 'bad.test', 'twist.test']) {
    const q = rawQuery(name, 1, { id: 0x0bad, flags: RD });
    const m = mustParse(await udpExchange(ld.port, q), name);
    assert.equal(m.rcode, 2, `${name}: SERVFAIL`);
    assert.equal(m.qname, name, `${name}: the client question`);
  }
  assert.equal(ld.server.metrics.get('pipeline_errors_total'), 3);
});
