// A local CNAME whose target is not local data is chased through the stages after records and
// the whole chain returned (issue "A local CNAME is chased"): on real loopback sockets, end to end.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { resolverFor, tcpExchange, udpExchange } from '../helpers/client.js';
import { ipv4, mustParse, nameWire, QNAME_PTR, rawQuery, replyTo, rr, soaRdata, type CheckedMessage } from '../helpers/packets.js';
import { bounded, startLineDns, type Running, type TestFiles } from '../helpers/server.js';
import { TestUpstream } from '../helpers/upstream.js';
import { INSIDE, LOCAL, NAME, OUTSIDE, PUBLIC, SPLIT } from '../helpers/split.js';
import { QueryContext } from '../../src/core/context.js';
import { isRejection, parseQuery } from '../../src/lib/dns/query.js';
import { withQuestionName } from '../../src/lib/dns/chain.js';

const T = { timeout: 60_000 };
const AA = 0x0400;
const TC = 0x0200;
const A = 1;
const CNAME = 5;
const AAAA = 28;
const EXT_A = '203.0.113.5';
const EDGE_A = '203.0.113.9';
const V6 = Buffer.from('20010db8000000000000000000000005', 'hex');

/** `n` names h0..h{n-1} under `zone`, each a CNAME to the next, the last to `target`. */
function chain(prefix: string, n: number, target: string): { name: string; type: string; rdata: string }[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}.local`, type: 'CNAME', rdata: i === n - 1 ? target : `${prefix}${i + 1}.local` }));
}

const RECORDS = [
  { name: 'www.local', type: 'CNAME', rdata: 'ext.example' },
  { name: 'gone.local', type: 'CNAME', rdata: 'nx.example' },
  { name: 'cdn.local', type: 'CNAME', rdata: 'cdn.example' },
  { name: 'big.local', type: 'CNAME', rdata: 'big.example' },
  { name: 'short.local', type: 'CNAME', rdata: 'short.example' },
  { name: 'bad.local', type: 'CNAME', rdata: 'servfail.example' },
  { name: 'loopa.local', type: 'CNAME', rdata: 'back.example' },
  { name: 'l1.local', type: 'CNAME', rdata: 'l2.local' },
  { name: 'l2.local', type: 'CNAME', rdata: 'l1.local' },
  { name: 'tolocal.local', type: 'CNAME', rdata: 'here.local' },
  { name: 'here.local', type: 'A', ttl: 120, rdata: '192.0.2.50' },
  { name: 'lab.local', type: 'CNAME', rdata: NAME },
  // 9 local links: one more than the records stage follows.
  ...chain('c', 9, 'ext.example'),
  // 8 local links: the most it follows, then the upstream's answer.
  ...chain('d', 8, 'ext.example'),
  // 8 local links to a target whose upstream chain has 9 more: 17 in all, over 16.
  ...chain('e', 8, 'long.example'),
  ...SPLIT.records,
];

/** The upstream: scripted per name; every question is recorded. */
function upstreamReply(raw: Buffer, name: string, qtype: number): Buffer {
  const soa = rr('example', 6, 1, 30, soaRdata('ns.example', 'hostmaster.example', 20));
  switch (name) {
    case 'ext.example':
      if (qtype === A) return replyTo(raw, { answers: [rr(QNAME_PTR, A, 1, 60, ipv4(EXT_A))] });
      if (qtype === AAAA) return replyTo(raw, { answers: [rr(QNAME_PTR, AAAA, 1, 60, V6)] });
      return replyTo(raw, { authority: [soa] });
    case 'nx.example':
      return replyTo(raw, { rcode: 3, authority: [soa] });
    case 'cdn.example':
      return replyTo(raw, { answers: [rr(QNAME_PTR, CNAME, 1, 100, nameWire('edge.cdn.net')), rr('edge.cdn.net', A, 1, 40, ipv4(EDGE_A))] });
    case 'big.example':
      return replyTo(raw, { answers: Array.from({ length: 40 }, (_, i) => rr(QNAME_PTR, A, 1, 300, ipv4(`198.18.0.${i + 1}`))) });
    case 'short.example':
      return replyTo(raw, { answers: [rr(QNAME_PTR, A, 1, 2, ipv4(EXT_A))] });
    case 'servfail.example':
      return replyTo(raw, { rcode: 2 });
    case 'back.example':
      // Back into the chain that led here: a loop through the join.
      return replyTo(raw, { answers: [rr(QNAME_PTR, CNAME, 1, 60, nameWire('loopa.local'))] });
    case 'long.example': {
      const links = Array.from({ length: 9 }, (_, i) => rr(i === 0 ? QNAME_PTR : `x${i}.long.example`, CNAME, 1, 60, nameWire(`x${i + 1}.long.example`)));
      return replyTo(raw, { answers: [...links, rr('x9.long.example', A, 1, 60, ipv4(EXT_A))] });
    }
    case NAME:
      return replyTo(raw, { answers: [rr(QNAME_PTR, A, 1, 300, ipv4(PUBLIC))] });
    default:
      return replyTo(raw, { rcode: 3, authority: [soa] });
  }
}

interface ChaseRig {
  up: TestUpstream;
  ld: Running;
  metric(name: string): number;
  /** Upstream questions as "name type". */
  asked(): string[];
}

async function withChase(config: Record<string, unknown>, body: (rig: ChaseRig) => Promise<void>, files: Omit<TestFiles, 'config'> = {}): Promise<void> {
  const up = await TestUpstream.start(({ raw, packet }) => {
    const q = packet.questions![0]!;
    return upstreamReply(raw, q.name.toLowerCase(), q.type === 'A' ? A : q.type === 'AAAA' ? AAAA : 0);
  });
  try {
    const ld = await startLineDns({ smartLine: SPLIT.smartLine, records: RECORDS, ...files, config: { upstreams: [up.address], forward: { timeout: 500, deadline: 1500 }, ...config } });
    try {
      await body({ up, ld, metric: (n) => ld.server.metrics.get(n), asked: () => up.requests.map((r) => `${r.packet.questions![0]!.name.toLowerCase()} ${r.packet.questions![0]!.type}`) });
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  } finally {
    await bounded(up.close(), 'the upstream');
  }
}

let nextId = 9100;

async function ask(port: number, name: string, type = A, from = '127.0.0.1', edns = true): Promise<CheckedMessage> {
  const id = nextId++ & 0xffff;
  const m = mustParse(await udpExchange(port, rawQuery(name, type, { id, opt: edns ? {} : undefined }), { from, timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

/** The answer section as "owner type data ttl", CNAME targets and addresses written out. */
function answer(m: CheckedMessage): string[] {
  return m.records
    .filter((r) => r.section === 0)
    .map((r) => {
      let data: string;
      if (r.type === A) data = [...r.rdata].join('.');
      else if (r.type === CNAME) data = rdataName(r.rdata);
      else data = r.rdata.toString('hex');
      return `${r.owner} ${r.type} ${data} ${r.ttl}`;
    });
}

/** An uncompressed name in RDATA (linedns writes chain targets out whole). */
function rdataName(b: Buffer): string {
  const labels: string[] = [];
  for (let o = 0; o < b.length && b[o] !== 0; o += b[o]! + 1) {
    assert.ok((b[o]! & 0xc0) === 0, 'a compressed name in a joined CNAME RDATA');
    labels.push(b.subarray(o + 1, o + 1 + b[o]!).toString('latin1'));
  }
  return labels.join('.');
}

// The default pipeline: decode, acl, ratelimit, cache, rewrite, records, zones, smartline, forward.
const DEFAULT = {};

describe('a local CNAME to a name that is not local is chased', T, () => {
  test('to an upstream A: the local CNAME first, then the upstream answer, TTL the chain minimum, no AA; Node resolvers get the address', async () => {
    await withChase(DEFAULT, async (rig) => {
      const query = rawQuery('WWW.local', A, { id: 4242, opt: {} });
      const wire = await udpExchange(rig.ld.port, query);
      assert.ok(wire !== null);
      assert.ok(wire.subarray(12, 12 + 15).equals(query.subarray(12, 12 + 15)), 'the question as the client spelled it');
      const m = mustParse(wire);
      assert.equal(m.rcode, 0);
      assert.deepEqual(answer(m), ['www.local 5 ext.example 60', `ext.example 1 ${EXT_A} 60`]);
      assert.deepEqual([...wire.subarray(query.length - 11, query.length - 9)], [0xc0, 12], 'the CNAME is owned by a pointer to the question');
      assert.equal(m.flags & AA, 0, 'the joined answer holds data that is not ours');
      assert.deepEqual(rig.asked(), ['ext.example A'], 'the upstream is asked the target, not the local name');
      assert.equal(rig.metric('records_chased_total'), 1);
      // c-ares, as Node's dns.promises.Resolver (the path getaddrinfo-like stubs take): they do not chase.
      const r = resolverFor(rig.ld.port);
      const got = await r.resolve4('www.local', { ttl: true });
      assert.deepEqual(got.map((a) => a.address), [EXT_A]);
      assert.ok(got[0]!.ttl <= 60 && got[0]!.ttl >= 58, 'from the cache, aged');
      assert.deepEqual(await r.resolveCname('www.local'), ['ext.example']);
    });
  });

  test('AAAA is chased as AAAA, A as A', async () => {
    await withChase(DEFAULT, async (rig) => {
      const six = await ask(rig.ld.port, 'www.local', AAAA);
      assert.deepEqual(answer(six), ['www.local 5 ext.example 60', `ext.example 28 ${V6.toString('hex')} 60`]);
      assert.deepEqual(await resolverFor(rig.ld.port).resolve6('www.local'), ['2001:db8::5']);
      assert.deepEqual(answer(await ask(rig.ld.port, 'www.local', A)), ['www.local 5 ext.example 60', `ext.example 1 ${EXT_A} 60`]);
      assert.deepEqual(rig.asked(), ['ext.example AAAA', 'ext.example A'], 'the Resolver repeat came from the cache');
    });
  });

  test('to an upstream NXDOMAIN: rcode NXDOMAIN (RFC 6604), the CNAME, the SOA; TTL the negative one', async () => {
    await withChase(DEFAULT, async (rig) => {
      const m = await ask(rig.ld.port, 'gone.local');
      assert.equal(m.rcode, 3);
      assert.deepEqual(answer(m), ['gone.local 5 nx.example 20'], 'min(local 300, SOA TTL 30, SOA MINIMUM 20)');
      assert.deepEqual(m.records.filter((r) => r.section === 1).map((r) => `${r.owner} ${r.type}`), ['example 6']);
      await assert.rejects(resolverFor(rig.ld.port).resolve4('gone.local'), { code: 'ENOTFOUND' });
    });
  });

  test('to an upstream CNAME chain: every link in order, TTL the chain minimum', async () => {
    await withChase(DEFAULT, async (rig) => {
      assert.deepEqual(answer(await ask(rig.ld.port, 'cdn.local')), ['cdn.local 5 cdn.example 40', 'cdn.example 5 edge.cdn.net 40', `edge.cdn.net 1 ${EDGE_A} 40`]);
      assert.deepEqual(await resolverFor(rig.ld.port).resolve4('cdn.local'), [EDGE_A]);
    });
  });

  test('an upstream SERVFAIL for the target is the answer: SERVFAIL, no records', async () => {
    await withChase(DEFAULT, async (rig) => {
      const m = await ask(rig.ld.port, 'bad.local');
      assert.equal(m.rcode, 2);
      assert.equal(m.records.filter((r) => r.section !== 2).length, 0);
      assert.equal(rig.metric('records_chain_errors_total'), 1);
    });
  });

  test('a chain that already ends in local data is answered as before: AA, local TTLs, the upstream never asked', async () => {
    await withChase(DEFAULT, async (rig) => {
      const m = await ask(rig.ld.port, 'tolocal.local');
      assert.ok(m.flags & AA);
      assert.deepEqual(answer(m), ['tolocal.local 5 here.local 300', 'here.local 1 192.0.2.50 120']);
      assert.deepEqual(rig.asked(), []);
    });
  });
});

describe('loops and length', T, () => {
  test('a local loop: SERVFAIL, the upstream never asked', async () => {
    await withChase(DEFAULT, async (rig) => {
      assert.equal((await ask(rig.ld.port, 'l1.local')).rcode, 2);
      assert.deepEqual(rig.asked(), []);
    });
  });

  test('a loop through the join (the upstream CNAMEs back to the local name): SERVFAIL', async () => {
    await withChase(DEFAULT, async (rig) => {
      assert.equal((await ask(rig.ld.port, 'loopa.local')).rcode, 2);
      assert.deepEqual(rig.asked(), ['back.example A']);
    });
  });

  test('8 local links are chased; 9 are SERVFAIL without asking; 8 + 9 upstream links (over 16) SERVFAIL', async () => {
    await withChase(DEFAULT, async (rig) => {
      const d = await ask(rig.ld.port, 'd0.local');
      assert.equal(d.rcode, 0);
      assert.equal(answer(d).length, 9);
      assert.equal(answer(d)[8], `ext.example 1 ${EXT_A} 60`);
      assert.equal((await ask(rig.ld.port, 'c0.local')).rcode, 2);
      assert.deepEqual(rig.asked(), ['ext.example A'], 'the 9-link chain never reached the upstream');
      assert.equal((await ask(rig.ld.port, 'e0.local')).rcode, 2);
      assert.equal(rig.metric('records_chain_errors_total'), 2);
    });
  });
});

describe('labels', T, () => {
  test('a target labelled for one line: that line gets the local data (AA), another the upstream answer for the target; each cached per view', async () => {
    await withChase(DEFAULT, async (rig) => {
      for (let round = 0; round < 2; round++) {
        const inside = await ask(rig.ld.port, 'lab.local', A, INSIDE);
        assert.deepEqual(answer(inside), [`lab.local 5 ${NAME} 300`, `${NAME} 1 ${LOCAL} 60`]);
        assert.ok(inside.flags & AA);
        const outside = await ask(rig.ld.port, 'lab.local', A, OUTSIDE);
        assert.deepEqual(answer(outside).map((l) => l.replace(/ \d+$/, '')), [`lab.local 5 ${NAME}`, `${NAME} 1 ${PUBLIC}`]);
        assert.equal(outside.flags & AA, 0);
      }
      assert.deepEqual(rig.asked(), [`${NAME} A`], 'the second round came from the cache, per view');
      // The outside repeat is a cache hit; the inside one (local data) may be the memo's within the second.
      assert.equal(rig.metric('cache_hits_total') + rig.metric('udp_memo_hits_total'), 2);
    });
  });

  test('with smartline before records (records filters itself), the same answers', async () => {
    await withChase({ pipeline: ['decode', 'smartline', 'records', 'cache', 'forward'] }, async (rig) => {
      assert.deepEqual(answer(await ask(rig.ld.port, 'lab.local', A, INSIDE)), [`lab.local 5 ${NAME} 300`, `${NAME} 1 ${LOCAL} 60`]);
      assert.deepEqual(answer(await ask(rig.ld.port, 'lab.local', A, OUTSIDE)).map((l) => l.replace(/ \d+$/, '')), [`lab.local 5 ${NAME}`, `${NAME} 1 ${PUBLIC}`]);
    });
  });
});

describe('cache and answer memo', T, () => {
  test('the cache before records keeps the joined answer as an upstream one: aged, for the chain minimum; asked again after it', async () => {
    await withChase(DEFAULT, async (rig) => {
      const first = await ask(rig.ld.port, 'short.local');
      assert.deepEqual(answer(first), ['short.local 5 short.example 2', `short.example 1 ${EXT_A} 2`]);
      // Another client: not a memo repeat, a cache hit; TTLs aged by whole seconds, never above the first.
      const again = await ask(rig.ld.port, 'short.local', A, INSIDE);
      assert.equal(rig.metric('cache_hits_total'), 1);
      assert.equal(rig.up.requests.length, 1);
      const ttls = again.records.filter((r) => r.section === 0).map((r) => r.ttl);
      assert.ok(ttls.every((t) => t === ttls[0] && t <= 2), `aged alike: ${ttls.join(',')}`);
      await sleep(3100);
      assert.deepEqual(answer(await ask(rig.ld.port, 'short.local')), ['short.local 5 short.example 2', `short.example 1 ${EXT_A} 2`]);
      assert.equal(rig.up.requests.length, 2, 'expired: chased again');
    });
  });

  test('a joined answer fetched upstream is not repeated from the answer memo; its cached copy is', async () => {
    await withChase(DEFAULT, async (rig) => {
      const q = (id: number): Buffer => rawQuery('www.local', A, { id });
      const one = mustParse(await udpExchange(rig.ld.port, q(1)));
      assert.equal(one.rcode, 0);
      const two = mustParse(await udpExchange(rig.ld.port, q(2)));
      assert.deepEqual(answer(two).map((l) => l.replace(/ \d+$/, '')), answer(one).map((l) => l.replace(/ \d+$/, '')));
      assert.equal(rig.metric('udp_memo_hits_total'), 0, 'the first answer was not kept in the memo');
      assert.equal(rig.metric('cache_hits_total'), 1);
      assert.equal(rig.up.requests.length, 1);
    });
  });

  test('with the cache after records, a chase whose target the cache answers is repeatable', async () => {
    await withChase({ pipeline: ['decode', 'records', 'smartline', 'cache', 'forward'] }, async (rig) => {
      await ask(rig.ld.port, 'www.local');
      const m = await ask(rig.ld.port, 'www.local');
      assert.deepEqual(answer(m).map((l) => l.replace(/ \d+$/, '')), ['www.local 5 ext.example', `ext.example 1 ${EXT_A}`]);
      assert.equal(rig.metric('cache_hits_total'), 1, 'the target came from the cache after records');
      assert.equal(rig.up.requests.length, 1);
      assert.equal(rig.metric('records_chased_total'), 2);
    });
  });
});

describe('transports', T, () => {
  test('a long joined answer: truncated over UDP (TC, no records), whole over TCP', async () => {
    await withChase(DEFAULT, async (rig) => {
      const udp = await ask(rig.ld.port, 'big.local', A, '127.0.0.1', false);
      assert.ok(udp.flags & TC, 'over 512 octets without EDNS');
      assert.equal(udp.records.length, 0);
      const [wire] = await tcpExchange(rig.ld.port, [rawQuery('big.local', A, { id: 77 })]);
      const tcp = mustParse(wire ?? null);
      assert.equal(tcp.flags & TC, 0);
      const an = answer(tcp);
      assert.equal(an.length, 41);
      assert.equal(an[0], 'big.local 5 big.example 300');
      assert.equal(an[40], 'big.example 1 198.18.0.40 300');
    });
  });
});

describe('ctx.subquery (the core facility the chase uses)', () => {
  const client = { address: '127.0.0.1', port: 5353, family: 'IPv4' as const };

  function context(name: string): QueryContext {
    const raw = rawQuery(name, A, { id: 4321, opt: {} });
    const ctx = new QueryContext(raw, client, 'udp', 0);
    const q = parseQuery(raw);
    assert.ok(!isRejection(q));
    ctx.query = q;
    return ctx;
  }

  function otherQuestion(ctx: QueryContext, name: string): Buffer {
    return withQuestionName(ctx.raw, ctx.query!.questionEnd, nameWire(name));
  }

  test('runs `next` for the other question with a clean slate, hooks applied, and gives the caller its state back', () => {
    const ctx = context('www.local');
    const outerRaw = ctx.raw;
    const outerQuery = ctx.query;
    ctx.set('variesByView', false);
    let seen = '';
    const sub = ctx.subquery('test', otherQuestion(ctx, 'target.example'), () => {
      seen = `${ctx.query!.name} ${ctx.query!.id} ${String(ctx.get('variesByView'))} ${String(ctx.response)}`;
      ctx.set('variesByView', true);
      ctx.onReply((_c, wire) => Buffer.concat([wire, Buffer.from('!')]));
      ctx.respondError('inner', 3);
    });
    assert.ok(!(sub instanceof Promise));
    assert.equal(seen, 'target.example 4321 undefined null', 'the other question, the client ID, no slots, no response');
    assert.equal(sub.answeredBy, 'inner');
    assert.equal(sub.slots.variesByView, true);
    assert.equal(sub.response!.at(-1), 0x21, "the later stage's hook ran on its answer");
    assert.equal(sub.reusable, false, 'a hooked answer is not repeatable');
    assert.equal(ctx.raw, outerRaw);
    assert.equal(ctx.query, outerQuery);
    assert.equal(ctx.response, null);
    assert.equal(ctx.hooks, null);
    assert.equal(ctx.get('variesByView'), false);
  });

  test('a throw (or rejection) inside restores the caller and goes on', async () => {
    const ctx = context('www.local');
    const outerRaw = ctx.raw;
    assert.throws(() => ctx.subquery('test', otherQuestion(ctx, 'a.example'), () => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(ctx.raw, outerRaw);
    assert.equal(ctx.query!.name, 'www.local');
    const p = ctx.subquery('test', otherQuestion(ctx, 'b.example'), () => Promise.reject(new Error('later')));
    assert.equal(ctx.query!.name, 'b.example', 'still running');
    await assert.rejects(Promise.resolve(p), /later/);
    assert.equal(ctx.query!.name, 'www.local');
    assert.equal(ctx.raw, outerRaw);
  });

  test('an async run comes back with its answer; nesting is bounded', async () => {
    const ctx = context('www.local');
    const sub = await ctx.subquery('test', otherQuestion(ctx, 'c.example'), async () => {
      await sleep(1);
      ctx.reusable = { value: 0 } as QueryContext['reusable'];
      ctx.respondError('inner', 0);
    });
    assert.equal(sub.reusable, true);
    assert.equal(ctx.reusable, null);
    const nest = (depth: number): void => {
      void ctx.subquery('test', otherQuestion(ctx, `n${depth}.example`), () => nest(depth + 1));
    };
    assert.throws(() => nest(0), /nested deeper than 4/);
    assert.equal(ctx.query!.name, 'www.local');
  });
});
