// Cache poisoning and view leaks: unrelated records in upstream answers are scrubbed and never served
// for their own names; one smart-line client's answer never reaches another; client ECS stays here.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { bounded, startLineDns, type Running, type TestFiles } from './helpers/server.js';
import { TestUpstream, type UpstreamHandler } from './helpers/upstream.js';
import { udpExchange } from './helpers/client.js';
import {
  aRecords,
  checkMessage,
  ecsOption,
  ednsOption,
  ipv4,
  labelsWire,
  mustParse,
  nameWire,
  QNAME_PTR,
  questionEndOf,
  rawQuery,
  readWireName,
  replyTo,
  rr,
  soaRdata,
  type CheckedMessage,
  type OptFields,
} from './helpers/packets.js';

/** Its own loopback address for the upstream: see UP_HOST in hostile-upstream.test.ts. */
const UP_HOST = '127.0.0.72';
const EVIL = '6.6.6.6';

/** What the honest upstream says for names other than the poisoned question: 198.51.100.N. */
function honest(raw: Buffer, name: string): Buffer {
  const qEnd = questionEndOf(raw);
  const type = raw.readUInt16BE(qEnd - 4);
  if (type !== 1) return replyTo(raw, { authority: [rr('example', 6, 1, 60, soaRdata('ns.example', 'h.example', 60))] });
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) & 0x7f;
  return replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(`198.51.100.${h + 1}`))] });
}

function qname(raw: Buffer): string {
  const m = checkMessage(raw);
  if (typeof m === 'string' || m.qname === null) throw new Error(`upstream got an unreadable query: ${m}`);
  return m.qname;
}

interface Rig {
  up: TestUpstream;
  ld: Running;
  metric(name: string): number;
}

/** Runs `body` against a linedns forwarding to `handler`. */
async function withRig(
  handler: UpstreamHandler,
  files: Omit<TestFiles, 'config'> & { config?: Record<string, unknown> },
  body: (rig: Rig) => Promise<void>,
): Promise<void> {
  const up = await TestUpstream.start(handler, UP_HOST);
  let ld: Running;
  try {
    ld = await startLineDns({ ...files, config: { upstreams: [`${UP_HOST}:${up.port}`], forward: { timeout: 500, deadline: 1500 }, ...files.config } });
  } catch (err) {
    await up.close();
    throw err;
  }
  try {
    await body({ up, ld, metric: (n) => ld.server.metrics.get(n) });
  } finally {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the upstream');
  }
}

let nextId = 2000;

async function ask(port: number, name: string, opts: { type?: number; from?: string; opt?: OptFields } = {}): Promise<CheckedMessage> {
  const id = nextId++ & 0xffff;
  const reply = await udpExchange(port, rawQuery(name, opts.type ?? 1, { id, opt: opts.opt }), { from: opts.from, timeoutMs: 3000 });
  const m = mustParse(reply, `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

function describeRecords(m: CheckedMessage): string[] {
  return m.records.map((r) => `${['an', 'ns', 'ar'][r.section]} ${r.owner} ${r.type}`);
}

describe('poisoning: unrelated records in an upstream answer', { timeout: 30_000 }, () => {
  const VICTIM = 'www.victim.example';

  /** The poisoned answer: the true A plus unrelated answer, authority and glue records. */
  const poisoned: UpstreamHandler = ({ raw }) => {
    const name = qname(raw);
    if (name !== VICTIM) return honest(raw, name);
    return replyTo(raw, {
      answers: [
        rr(QNAME_PTR, 1, 1, 300, ipv4('192.0.2.10')),
        rr('other.victim.example', 1, 1, 300, ipv4(EVIL)),
        rr('www.bank.example', 1, 1, 300, ipv4(EVIL)),
      ],
      authority: [
        rr('victim.example', 2, 1, 300, nameWire('ns.victim.example')),
        rr('bank.example', 2, 1, 300, nameWire('ns.evil.example')),
        rr('evil.example', 2, 1, 300, nameWire('ns.evil.example')),
      ],
      additional: [
        rr('ns.victim.example', 1, 1, 300, ipv4('192.0.2.53')),
        rr('ns.evil.example', 1, 1, 300, ipv4(EVIL)),
        rr('www.bank.example', 1, 1, 300, ipv4(EVIL)),
        rr('mail.bank.example', 28, 1, 300, Buffer.alloc(16, 6)),
      ],
    });
  };

  test('the client gets only the records that belong to its question', async () => {
    await withRig(poisoned, {}, async (rig) => {
      const m = await ask(rig.ld.port, VICTIM, { opt: {} });
      assert.equal(m.rcode, 0);
      assert.deepEqual(describeRecords(m), [`an ${VICTIM} 1`, 'ns victim.example 2', 'ar ns.victim.example 1']);
      assert.deepEqual(aRecords(m), [`${VICTIM} 192.0.2.10`]);
      assert.ok(m.opt, 'the client asked with EDNS');
      assert.equal(rig.metric('forward_scrubbed_records_total'), 7);
      // The cached copy is the scrubbed one.
      const again = await ask(rig.ld.port, VICTIM);
      assert.equal(rig.metric('cache_hits_total'), 1);
      assert.deepEqual(describeRecords(again), describeRecords(m));
    });
  });

  test('names the poisoned answer mentioned go upstream later and get the honest answer', async () => {
    await withRig(poisoned, {}, async (rig) => {
      await ask(rig.ld.port, VICTIM);
      const hits = rig.metric('cache_hits_total');
      for (const [name, type] of [
        ['other.victim.example', 1],
        ['www.bank.example', 1],
        ['ns.evil.example', 1],
        ['ns.victim.example', 1],
        ['mail.bank.example', 28],
        ['bank.example', 2],
        ['evil.example', 2],
        ['victim.example', 2],
      ] as const) {
        const before = rig.up.requests.length;
        const m = await ask(rig.ld.port, name, { type });
        assert.equal(rig.up.requests.length, before + 1, `${name} ${type} did not go upstream`);
        for (const r of m.records) assert.ok(!(r.type === 1 && [...r.rdata].join('.') === EVIL), `${name}: poisoned address served`);
        if (type === 1) assert.deepEqual(aRecords(m).length, 1);
      }
      assert.equal(rig.metric('cache_hits_total'), hits);
    });
  });

  test('records in a CNAME chain reach the client but are cached only under the question', async () => {
    await withRig(({ raw }) => {
      const name = qname(raw);
      if (name !== 'alias.victim.example') return honest(raw, name);
      return replyTo(raw, {
        answers: [
          rr(QNAME_PTR, 5, 1, 300, nameWire('cdn.elsewhere.example')),
          rr('cdn.elsewhere.example', 1, 1, 300, ipv4('192.0.2.20')),
          rr('www.bank.example', 1, 1, 300, ipv4(EVIL)),
        ],
      });
    }, {}, async (rig) => {
      const m = await ask(rig.ld.port, 'alias.victim.example');
      assert.deepEqual(describeRecords(m), ['an alias.victim.example 5', 'an cdn.elsewhere.example 1']);
      const before = rig.up.requests.length;
      const target = await ask(rig.ld.port, 'cdn.elsewhere.example');
      assert.equal(rig.up.requests.length, before + 1, 'the chain target was served from the cache');
      assert.equal(aRecords(target).length, 1);
      assert.notDeepEqual(aRecords(target), ['cdn.elsewhere.example 192.0.2.20'], 'the chain target came from the chain');
      const bank = await ask(rig.ld.port, 'www.bank.example');
      assert.equal(rig.up.requests.length, before + 2);
      assert.ok(!aRecords(bank).some((a) => a.endsWith(EVIL)));
    });
  });

  test('an NXDOMAIN carrying another zone\'s SOA loses it and is not cached by it', async () => {
    await withRig(({ raw }) => {
      const name = qname(raw);
      if (name !== 'nx.victim.example') return honest(raw, name);
      return replyTo(raw, { rcode: 3, authority: [rr('bank.example', 6, 1, 3600, soaRdata('ns.evil.example', 'h.evil.example', 3600))] });
    }, {}, async (rig) => {
      const m = await ask(rig.ld.port, 'nx.victim.example');
      assert.equal(m.rcode, 3);
      assert.deepEqual(describeRecords(m), []);
      assert.equal(rig.metric('cache_stores_total'), 0);
      const before = rig.up.requests.length;
      await ask(rig.ld.port, 'bank.example', { type: 6 });
      assert.equal(rig.up.requests.length, before + 1);
    });
  });
});

describe('poisoning: scrubbing and templating keep what they keep intact', { timeout: 30_000 }, () => {
  // Labels may hold any octet (RFC 2181 section 11). The scrubber must not alter the question
  // or a kept record while it removes the unrelated ones.
  const NAME = labelsWire([Buffer.from([0x63, 0x61, 0x66, 0xe9]), Buffer.from('example')]);
  const TARGET = labelsWire([Buffer.from([0x63, 0x64, 0x6e, 0xff]), Buffer.from('example')]);

  test('a question and CNAME target with octets over 0x7f come back unchanged after scrubbing', async () => {
    await withRig(({ raw }) => replyTo(raw, {
      answers: [rr(QNAME_PTR, 5, 1, 300, TARGET), rr(TARGET, 1, 1, 300, ipv4('192.0.2.30'))],
      additional: [rr('unrelated.example', 1, 1, 300, ipv4(EVIL))],
    }), {}, async (rig) => {
      const id = 4321;
      const q = Buffer.concat([Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), NAME, Buffer.from([0, 1, 0, 1])]);
      for (const round of ['from upstream', 'from cache']) {
        const reply = await udpExchange(rig.ld.port, q, { timeoutMs: 3000 });
        const m = mustParse(reply, `reply ${round}`);
        assert.equal(m.id, id);
        assert.ok(reply!.subarray(12, m.questionEnd).equals(q.subarray(12)), `question altered ${round}: ${reply!.toString('hex')}`);
        assert.deepEqual(describeRecords(m), [`an ${m.qname} 5`, 'an cdn\\255.example 1'], round);
        assert.equal(m.records[0]!.owner, 'caf\\233.example');
        assert.equal(readWireName(reply!, m.records[0]!.rdStart)?.name, 'cdn\\255.example', `CNAME target altered ${round}`);
      }
      assert.equal(rig.metric('forward_scrubbed_records_total'), 1);
    });
  });

  test('an OPT ahead of the glue (dropped when templating) leaves names with octets over 0x7f intact', async () => {
    // Cutting an OPT out of the middle of the additional section rebuilds the message: the same
    // round trip hazard as scrubbing, with no unrelated record needed to set it off.
    const MX = labelsWire([Buffer.from([0x6d, 0x78, 0xff]), Buffer.from('example')]);
    await withRig(({ raw }) => replyTo(raw, {
      answers: [rr(QNAME_PTR, 15, 1, 300, Buffer.concat([Buffer.from([0, 10]), MX]))],
      additional: [rr('.', 41, 1232, 0, Buffer.alloc(0)), rr(MX, 1, 1, 300, ipv4('192.0.2.31'))],
    }), {}, async (rig) => {
      const q = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), NAME, Buffer.from([0, 15, 0, 1])]);
      const reply = await udpExchange(rig.ld.port, q, { timeoutMs: 3000 });
      const m = mustParse(reply, 'reply');
      assert.ok(reply!.subarray(12, m.questionEnd).equals(q.subarray(12)), `question altered: ${reply!.toString('hex')}`);
      assert.deepEqual(describeRecords(m), ['an caf\\233.example 15', 'ar mx\\255.example 1']);
      assert.equal(readWireName(reply!, m.records[0]!.rdStart + 2)?.name, 'mx\\255.example', 'MX exchange altered');
      assert.equal(m.opt, null, 'the client sent no EDNS');
    });
  });
});

describe('poisoning: smart-line views never leak through the cache', { timeout: 30_000 }, () => {
  const NAME = 'app.split.example';
  const LOCAL = '10.0.0.2';
  const files = {
    smartLine: { internal: ['127.0.0.2/32'], external: ['127.0.0.3/32'] },
    records: [{ name: NAME, type: 'A', ttl: 60, rdata: LOCAL, labels: ['internal'] }],
  };
  const upstream: UpstreamHandler = ({ raw }) => honest(raw, qname(raw));
  const publicAddr = (): string => {
    let h = 0;
    for (const c of NAME) h = (h * 31 + c.charCodeAt(0)) & 0x7f;
    return `198.51.100.${h + 1}`;
  };

  // The default puts the cache first (DESIGN.md's order): safe only because the cache keys
  // view-dependent answers by view. Records-first orders (the old default) must stay safe too.
  for (const pipeline of [
    undefined,
    ['decode', 'acl', 'smartline', 'cache', 'records', 'forward'],
    ['decode', 'acl', 'ratelimit', 'smartline', 'records', 'cache', 'forward'],
  ]) {
    const label = pipeline ? `pipeline ${pipeline.join(', ')}` : 'default pipeline (cache first)';
    const config = pipeline ? { pipeline } : {};

    test(`${label}: outside client first, then the inside client still gets its local answer`, async () => {
      await withRig(upstream, { ...files, config }, async (rig) => {
        const outside1 = await ask(rig.ld.port, NAME, { from: '127.0.0.3' });
        assert.deepEqual(aRecords(outside1), [`${NAME} ${publicAddr()}`]);
        assert.equal(rig.metric('cache_stores_total'), 1, 'the public answer was not cached');
        const inside = await ask(rig.ld.port, NAME, { from: '127.0.0.2' });
        assert.deepEqual(aRecords(inside), [`${NAME} ${LOCAL}`], 'the inside client got the outside client\'s cached answer');
        const outside2 = await ask(rig.ld.port, NAME, { from: '127.0.0.3' });
        assert.deepEqual(aRecords(outside2), [`${NAME} ${publicAddr()}`]);
        assert.equal(rig.up.requests.length, 1, 'the second outside query should be a cache hit');
      });
    });

    test(`${label}: inside client first, then the outside client goes upstream, then inside again`, async () => {
      await withRig(upstream, { ...files, config }, async (rig) => {
        const inside1 = await ask(rig.ld.port, NAME, { from: '127.0.0.2' });
        assert.deepEqual(aRecords(inside1), [`${NAME} ${LOCAL}`]);
        assert.equal(rig.up.requests.length, 0);
        const outside = await ask(rig.ld.port, NAME, { from: '127.0.0.3' });
        assert.deepEqual(aRecords(outside), [`${NAME} ${publicAddr()}`], 'the outside client saw the internal record');
        assert.equal(rig.up.requests.length, 1);
        const inside2 = await ask(rig.ld.port, NAME, { from: '127.0.0.2' });
        assert.deepEqual(aRecords(inside2), [`${NAME} ${LOCAL}`], 'the inside client got the outside client\'s cached answer');
      });
    });
  }

  test('DO and CD variants and case changes do not open a way round the view either', async () => {
    await withRig(upstream, files, async (rig) => {
      await ask(rig.ld.port, NAME.toUpperCase(), { from: '127.0.0.3', opt: { flags: 0x8000 } });
      await ask(rig.ld.port, NAME, { from: '127.0.0.3' });
      for (const opt of [undefined, { flags: 0x8000 }, {}]) {
        const m = await ask(rig.ld.port, 'App.Split.Example', { from: '127.0.0.2', opt });
        assert.deepEqual(aRecords(m), [`${NAME} ${LOCAL}`]);
      }
    });
  });
});

describe('poisoning: client EDNS options stay at linedns', { timeout: 30_000 }, () => {
  test('a client ECS option (and cookie) is not forwarded upstream (forward.clientSubnet off)', async () => {
    await withRig(({ raw }) => honest(raw, qname(raw)), {}, async (rig) => {
      const m = await ask(rig.ld.port, 'ecs.example', { opt: { options: [ecsOption(1, 24, 0, [203, 0, 113]), ednsOption(10, Buffer.alloc(8, 0xab))] } });
      assert.equal(m.rcode, 0);
      assert.equal(rig.up.requests.length, 1);
      const sent = mustParse(rig.up.requests[0]!.raw, 'upstream query');
      assert.ok(sent.opt, 'linedns sends its own OPT upstream');
      assert.equal(sent.opt.rdata.length, 0, `client options were forwarded: ${sent.opt.rdata.toString('hex')}`);
      // The cookie does not come back; the subnet does, with scope 0 (RFC 7871 7.2.1): the
      // answer depended on no part of it.
      assert.ok(m.opt);
      assert.equal(m.opt.rdata.toString('hex'), ecsOption(1, 24, 0, [203, 0, 113]).toString('hex'));
    });
  });

  test('answers cached for one ECS subnet are the same for another: nothing subnet-specific was asked', async () => {
    await withRig(({ raw }) => honest(raw, qname(raw)), {}, async (rig) => {
      const a = await ask(rig.ld.port, 'ecs2.example', { opt: { options: [ecsOption(1, 24, 0, [203, 0, 113])] } });
      const b = await ask(rig.ld.port, 'ecs2.example', { opt: { options: [ecsOption(1, 24, 0, [198, 51, 100])] } });
      assert.equal(rig.up.requests.length, 1);
      assert.deepEqual(aRecords(a), aRecords(b));
      assert.equal(mustParse(rig.up.requests[0]!.raw, 'upstream query').opt?.rdata.length, 0, 'an ECS option reached the upstream');
    });
  });
});
