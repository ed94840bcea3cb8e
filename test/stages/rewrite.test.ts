// The rewrite stage on loopback sockets: X answered with Y's data, Y never shown (every section
// checked), errors under X, subtree rules, CNAME chains, per-line rules, caches on both sides.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { loadConfig } from '../../src/app/config.js';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { buildQuery, decode, udpExchange } from '../helpers/client.js';
import { bounded, startLineDns, withUpstream, writeConfig, type Running, type TestFiles } from '../helpers/server.js';
import { soa, TestUpstream, type UpstreamHandler } from '../helpers/upstream.js';

const T = { timeout: 60_000 };
const RDRA = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;
type Decoded = dnsPacket.DecodedPacket & { rcode?: string };
type Rec = dnsPacket.Answer;

const RULES = [
  { from: 'www.example.org', to: 'foo.novalocal' },
  { from: 'gone.example.org', to: 'nx.novalocal' },
  { from: 'broken.example.org', to: 'sf.novalocal' },
  { from: 'silent.example.org', to: 'dead.novalocal' },
  { from: 'cn.example.org', to: 'cn.novalocal' },
  { from: 'loc.example.org', to: 'local.novalocal' },
  { from: '*.prod.example.com', to: '*.novalocal' },
];

const rrsig = (owner: string): Rec =>
  ({
    name: owner,
    type: 'RRSIG',
    ttl: 300,
    data: { typeCovered: 'A', algorithm: 8, labels: 2, originalTTL: 300, expiration: 2000000000, inception: 1700000000, keyTag: 1, signersName: 'novalocal', signature: Buffer.alloc(16, 1) },
  }) as unknown as Rec;

/** The test zone `novalocal` as a recursive upstream answers it, AD set, NS and glue included. */
function zone(): UpstreamHandler {
  return ({ packet }) => {
    const q = packet.questions![0]!;
    const name = q.name.toLowerCase();
    const flags = RDRA | dnsPacket.AUTHENTIC_DATA;
    const ns: Rec[] = [{ name: 'novalocal', type: 'NS', ttl: 300, data: 'ns1.novalocal' }];
    const glue: Rec[] = [{ name: 'ns1.novalocal', type: 'A', ttl: 300, data: '10.0.0.53' }];
    if (name === 'dead.novalocal') return null;
    if (name === 'sf.novalocal') return { flags: RDRA | 2 };
    if (name.startsWith('nx.')) return { flags: flags | 3, authorities: [soa('novalocal', 60)] };
    if (name === 'cn.novalocal' && q.type === 'A') {
      return {
        flags,
        answers: [
          { name: q.name, type: 'CNAME', ttl: 300, data: 'x.cn.novalocal' },
          { name: 'x.cn.novalocal', type: 'CNAME', ttl: 300, data: 'bar.novalocal' },
          { name: 'bar.novalocal', type: 'A', ttl: 300, data: '10.0.0.30' },
        ],
      };
    }
    if (name === 'web.novalocal' && q.type === 'A') {
      return { flags, answers: [{ name: q.name, type: 'CNAME', ttl: 300, data: 'lb.novalocal' }, { name: 'lb.novalocal', type: 'A', ttl: 300, data: '10.0.0.20' }], authorities: ns, additionals: glue };
    }
    if (q.type === 'MX') return { flags, answers: [{ name: q.name, type: 'MX', ttl: 300, data: { preference: 10, exchange: `mail.${name}` } }], additionals: [{ name: `mail.${name}`, type: 'A', ttl: 300, data: '10.0.0.25' }] };
    if (q.type === 'SRV') return { flags, answers: [{ name: q.name, type: 'SRV', ttl: 300, data: { priority: 0, weight: 0, port: 5060, target: 'lb.novalocal' } }] };
    if (q.type === 'A') return { flags, answers: [{ name: q.name, type: 'A', ttl: 300, data: name === 'foo.novalocal' ? '10.0.0.10' : '198.51.100.1' }, rrsig(q.name)], authorities: ns, additionals: glue };
    // NODATA.
    return { flags, authorities: [soa('novalocal', 60)] };
  };
}

async function withServer(files: TestFiles, body: (ld: Running, up: TestUpstream) => Promise<void>, handler: UpstreamHandler = zone()): Promise<void> {
  const config = { answerMemo: false, forward: { timeout: 300, deadline: 900 }, pipeline: ['decode', 'cache', 'rewrite', 'forward'], rewrite: RULES, ...files.config };
  await withUpstream(handler, { ...files, config }, body);
}

let nextId = 300;

/** One query, its raw reply and the reply decoded; the ID checked. */
async function ask(port: number, name: string, type = 'A', opts: { from?: string; flags?: number } = {}): Promise<{ raw: Buffer; m: Decoded }> {
  const id = nextId++ & 0xffff;
  const raw = await udpExchange(port, buildQuery({ name, type }, { id, flags: opts.flags, edns: { dnssecOk: true } }), { from: opts.from, timeoutMs: 3000 });
  assert.ok(raw, `no reply for ${name} ${type}`);
  const m = decode(raw);
  assert.equal(m.id, id);
  return { raw, m };
}

/** Every name of a reply: question, owners, and the names inside RDATA. */
function namesOf(m: Decoded): string[] {
  const out = (m.questions ?? []).map((q) => q.name);
  for (const r of [...(m.answers ?? []), ...(m.authorities ?? []), ...(m.additionals ?? [])]) {
    if (r.type === 'OPT') continue;
    out.push(r.name);
    switch (r.type) {
      case 'CNAME':
      case 'DNAME':
      case 'NS':
      case 'PTR':
        out.push(r.data);
        break;
      case 'MX':
        out.push(r.data.exchange);
        break;
      case 'SRV':
        out.push(r.data.target);
        break;
      case 'SOA':
        out.push(r.data.mname, r.data.rname);
        break;
      case 'RRSIG':
        out.push(r.data.signersName);
        break;
      default:
        break;
    }
  }
  return out.map((n) => n.toLowerCase());
}

/** No name of the reply at or under `y`. */
function noneUnder(m: Decoded, y: string): void {
  for (const n of namesOf(m)) assert.ok(n !== y && !n.endsWith(`.${y}`), `${n} is at or under ${y}: ${JSON.stringify(namesOf(m))}`);
}

const typesIn = (rs: readonly Rec[] | undefined): string[] => (rs ?? []).map((r) => r.type);

test('exact rule: X answered with Y data; Y in no section; no NS, glue, RRSIG; AD cleared; client spelling', T, async () => {
  await withServer({}, async (ld, up) => {
    const { raw, m } = await ask(ld.port, 'WWW.Example.ORG', 'A', { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.AUTHENTIC_DATA });
    assert.equal(m.rcode, 'NOERROR');
    assert.equal(m.questions![0]!.name, 'WWW.Example.ORG');
    assert.deepEqual(m.answers!.map((a) => [a.name.toLowerCase(), a.type, (a as { data: unknown }).data]), [['www.example.org', 'A', '10.0.0.10']]);
    assert.deepEqual(typesIn(m.authorities), []);
    assert.deepEqual(typesIn(m.additionals), ['OPT']);
    assert.equal(m.flags! & dnsPacket.AUTHENTIC_DATA, 0, 'AD cleared');
    assert.equal(raw.indexOf('novalocal'), -1, 'no label of the test zone anywhere');
    // The upstream was asked Y, with the client's ID nowhere near it.
    assert.equal(up.requests.at(-1)!.packet.questions![0]!.name.toLowerCase(), 'foo.novalocal');
    // MX: RDATA names under Y are renamed (mail.foo.novalocal -> mail.www.example.org).
    const mx = (await ask(ld.port, 'www.example.org', 'MX')).m;
    assert.deepEqual(mx.answers!.map((a) => (a as dnsPacket.MxAnswer).data.exchange), ['mail.www.example.org']);
    noneUnder(mx, 'foo.novalocal');
  });
});

test('exact rule errors: NODATA and NXDOMAIN with an SOA at X\'s parent; SERVFAIL (upstream SERVFAIL or dead) with X\'s question', T, async () => {
  await withServer({}, async (ld) => {
    const nodata = (await ask(ld.port, 'www.example.org', 'AAAA')).m;
    assert.equal(nodata.rcode, 'NOERROR');
    assert.equal(nodata.answers!.length, 0);
    assert.deepEqual(
      nodata.authorities!.map((a) => [a.name, a.type, (a as dnsPacket.SoaAnswer).data.mname, (a as dnsPacket.SoaAnswer).data.rname, (a as dnsPacket.SoaAnswer).data.minimum]),
      [['example.org', 'SOA', 'ns.example.org', 'hostmaster.example.org', 60]],
    );
    noneUnder(nodata, 'novalocal');
    const nx = await ask(ld.port, 'gone.example.org');
    assert.equal(nx.m.rcode, 'NXDOMAIN');
    assert.equal(nx.m.questions![0]!.name, 'gone.example.org');
    assert.deepEqual(nx.m.authorities!.map((a) => [a.name, a.type]), [['example.org', 'SOA']]);
    assert.equal(nx.raw.indexOf('novalocal'), -1);
    for (const name of ['broken.example.org', 'silent.example.org']) {
      const { raw, m } = await ask(ld.port, name);
      assert.equal(m.rcode, 'SERVFAIL', name);
      assert.equal(m.questions![0]!.name, name);
      assert.equal(raw.indexOf('novalocal'), -1);
    }
  });
});

test('REFUSED carries X\'s question: a pipeline without forward finds nothing for Y', T, async () => {
  await withServer({ config: { pipeline: ['decode', 'rewrite', 'records'] }, records: [{ name: 'other.test', type: 'A', rdata: '192.0.2.1' }] }, async (ld) => {
    const { raw, m } = await ask(ld.port, 'www.example.org');
    assert.equal(m.rcode, 'REFUSED');
    assert.equal(m.questions![0]!.name, 'www.example.org');
    assert.equal(raw.indexOf('novalocal'), -1);
  });
});

test('CNAME chains through Y names are reverted; names outside Y stay (exact rule)', T, async () => {
  await withServer({}, async (ld) => {
    const { m } = await ask(ld.port, 'cn.example.org');
    assert.deepEqual(
      m.answers!.map((a) => [a.name, a.type, (a as { data: unknown }).data]),
      [
        ['cn.example.org', 'CNAME', 'x.cn.example.org'],
        ['x.cn.example.org', 'CNAME', 'bar.novalocal'],
        ['bar.novalocal', 'A', '10.0.0.30'],
      ],
    );
    noneUnder(m, 'cn.novalocal');
  });
});

test('suffix rule: every name under the target suffix comes back under the client\'s; NXDOMAIN SOA mapped back', T, async () => {
  await withServer({}, async (ld) => {
    const web = await ask(ld.port, 'web.prod.example.com');
    assert.deepEqual(
      web.m.answers!.map((a) => [a.name, a.type, (a as { data: unknown }).data]),
      [
        ['web.prod.example.com', 'CNAME', 'lb.prod.example.com'],
        ['lb.prod.example.com', 'A', '10.0.0.20'],
      ],
    );
    assert.equal(web.raw.indexOf('novalocal'), -1);
    const srv = await ask(ld.port, '_sip._tcp.web.prod.example.com', 'SRV');
    assert.deepEqual(srv.m.answers!.map((a) => (a as dnsPacket.SrvAnswer).data.target), ['lb.prod.example.com']);
    assert.equal(srv.raw.indexOf('novalocal'), -1);
    const mx = await ask(ld.port, 'foo.prod.example.com', 'MX');
    assert.deepEqual(mx.m.answers!.map((a) => (a as dnsPacket.MxAnswer).data.exchange), ['mail.foo.prod.example.com']);
    const nx = await ask(ld.port, 'nx.prod.example.com');
    assert.equal(nx.m.rcode, 'NXDOMAIN');
    assert.deepEqual(
      nx.m.authorities!.map((a) => [a.name, (a as dnsPacket.SoaAnswer).data.mname]),
      [['prod.example.com', 'ns.prod.example.com']],
    );
    const nodata = await ask(ld.port, 'foo.prod.example.com', 'TXT');
    assert.deepEqual(nodata.m.authorities!.map((a) => a.name), ['prod.example.com']);
    for (const r of [web, srv, mx, nx, nodata]) noneUnder(r.m, 'novalocal');
  });
});

test('a renamed name over 255 octets: SERVFAIL with X\'s question, for the question and for the reply', T, async () => {
  const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.long`;
  const files: TestFiles = { config: { rewrite: [{ from: '*.s.test', to: `*.${long}` }, { from: `*.${long}`, to: '*.n' }] } };
  // Rejected by the chain check: the second rule rewrites the first one's results. Split them.
  assert.throws(() => loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], ...files.config } }).configFile), ConfigError);
  const handler: UpstreamHandler = ({ packet }) => {
    const q = packet.questions![0]!;
    // A CNAME to a name that, under the long suffix again, is over 255 octets.
    return { answers: [{ name: q.name, type: 'CNAME', ttl: 60, data: `${'d'.repeat(60)}.${'e'.repeat(10)}.n` }, { name: `${'d'.repeat(60)}.${'e'.repeat(10)}.n`, type: 'A', ttl: 60, data: '10.0.0.1' }] };
  };
  await withServer({ config: { rewrite: [{ from: `*.${long}`, to: '*.n' }] } }, async (ld, up) => {
    const m = (await ask(ld.port, `x.${long}`)).m;
    assert.equal(m.rcode, 'SERVFAIL');
    assert.equal(m.questions![0]!.name, `x.${long}`);
    assert.equal(up.requests.length, 1);
  }, handler);
  await withServer({ config: { rewrite: [{ from: '*.s.test', to: `*.${long}` }] } }, async (ld, up) => {
    const x = `${'x'.repeat(60)}.${'y'.repeat(10)}.s.test`;
    const m = (await ask(ld.port, x)).m;
    assert.equal(m.rcode, 'SERVFAIL');
    assert.equal(m.questions![0]!.name, x);
    assert.equal(up.requests.length, 0, 'the question has no counterpart: nothing is asked');
  });
});

test('cache before rewrite: keyed by X, stores the reverted reply; Y asked directly is not served X\'s entry', T, async () => {
  const records = [{ name: 'local.novalocal', type: 'A', ttl: 120, rdata: '10.9.9.9' }];
  await withServer({ config: { pipeline: ['decode', 'cache', 'rewrite', 'records', 'forward'] }, records }, async (ld, up) => {
    const asked = (n: string): number => up.requests.filter((r) => r.packet.questions![0]!.name.toLowerCase() === n).length;
    const first = await ask(ld.port, 'www.example.org');
    const second = await ask(ld.port, 'WWW.example.org');
    assert.equal(asked('foo.novalocal'), 1);
    assert.equal(ld.server.metrics.get('cache_hits_total'), 1);
    assert.equal(second.m.questions![0]!.name, 'WWW.example.org');
    assert.deepEqual(second.m.answers!.map((a) => [a.name.toLowerCase(), (a as { data: unknown }).data]), [['www.example.org', '10.0.0.10']]);
    assert.equal(second.raw.indexOf('novalocal'), -1);
    assert.equal(first.raw.indexOf('novalocal'), -1);
    // Y itself: not rewritten, and not X's entry.
    const y = await ask(ld.port, 'foo.novalocal');
    assert.equal(asked('foo.novalocal'), 2);
    assert.equal(y.m.answers![0]!.name, 'foo.novalocal');
    // A denial is cached under X with X's SOA.
    await ask(ld.port, 'gone.example.org');
    const nx = await ask(ld.port, 'gone.example.org');
    assert.equal(asked('nx.novalocal'), 1);
    assert.equal(nx.m.rcode, 'NXDOMAIN');
    assert.deepEqual(nx.m.authorities!.map((a) => a.name), ['example.org']);
    // Local data for Y, cached under X.
    for (let i = 0; i < 2; i++) {
      const loc = await ask(ld.port, 'loc.example.org');
      assert.deepEqual(loc.m.answers!.map((a) => [a.name, (a as { data: unknown }).data, (a as { ttl?: number }).ttl]), [['loc.example.org', '10.9.9.9', 120]]);
      assert.equal(loc.raw.indexOf('novalocal'), -1);
    }
    assert.equal(ld.server.metrics.get('cache_hits_total'), 3);
  });
});

test('cache after rewrite: keyed by Y, each hit reverted for whoever asked X; Y asked directly gets Y', T, async () => {
  await withServer({ config: { pipeline: ['decode', 'rewrite', 'cache', 'forward'] } }, async (ld, up) => {
    for (let i = 0; i < 2; i++) {
      const { raw, m } = await ask(ld.port, 'www.example.org');
      assert.deepEqual(m.answers!.map((a) => [a.name, (a as { data: unknown }).data]), [['www.example.org', '10.0.0.10']]);
      assert.equal(raw.indexOf('novalocal'), -1);
      const nx = await ask(ld.port, 'nx.prod.example.com');
      assert.deepEqual(nx.m.authorities!.map((a) => a.name), ['prod.example.com']);
      assert.equal(nx.raw.indexOf('novalocal'), -1);
    }
    assert.equal(up.requests.length, 2);
    assert.equal(ld.server.metrics.get('cache_hits_total'), 2);
    const y = await ask(ld.port, 'foo.novalocal');
    assert.equal(up.requests.length, 2, 'Y is in the cache');
    assert.equal(y.m.answers![0]!.name, 'foo.novalocal');
  });
});

test('per-line rules: only the labelled line is rewritten; the cache before it keeps the views apart', T, async () => {
  const handler: UpstreamHandler = ({ packet }) => {
    const q = packet.questions![0]!;
    return { answers: [{ name: q.name, type: 'A', ttl: 300, data: q.name.toLowerCase() === 'b.test' ? '10.1.1.1' : '10.2.2.2' }] };
  };
  const files: TestFiles = {
    smartLine: { office: ['127.0.0.2/32'], lab: ['127.0.0.3/32'] },
    config: { pipeline: ['decode', 'cache', 'rewrite', 'smartline', 'forward'], rewrite: [{ from: 'a.example', to: 'b.test', labels: ['office'] }] },
  };
  await withServer(files, async (ld, up) => {
    for (let i = 0; i < 2; i++) {
      const office = (await ask(ld.port, 'a.example', 'A', { from: '127.0.0.2' })).m;
      assert.deepEqual(office.answers!.map((a) => [a.name, (a as { data: unknown }).data]), [['a.example', '10.1.1.1']]);
      const lab = (await ask(ld.port, 'a.example', 'A', { from: '127.0.0.3' })).m;
      assert.deepEqual(lab.answers!.map((a) => [a.name, (a as { data: unknown }).data]), [['a.example', '10.2.2.2']]);
    }
    assert.deepEqual(up.requests.map((r) => r.packet.questions![0]!.name).sort(), ['a.example', 'b.test']);
    assert.equal(ld.server.metrics.get('cache_hits_total'), 2);
  }, handler);
  // Labelled rules need a stage that knows the client's lines.
  const bad = writeConfig({ ...files, config: { upstreams: ['127.0.0.1:9'], ...files.config, pipeline: ['decode', 'cache', 'rewrite', 'forward'] } });
  assert.throws(() => loadConfig(bad.configFile), (err: ConfigError) => err.issues.some((i) => /"rewrite" needs "view".*"office"/.test(i.message)));
});

test('rewriteFrom: a flat {X: Y} file, read again on reload (the cache before rewrite starts over)', T, async () => {
  const files: TestFiles = { config: { pipeline: ['decode', 'cache', 'rewrite', 'forward'], rewrite: [], rewriteFrom: 'fqdn-map.json' }, extra: { 'fqdn-map.json': JSON.stringify({ 'www.example.org': 'foo.novalocal' }) } };
  await withServer(files, async (ld, up) => {
    assert.deepEqual((await ask(ld.port, 'www.example.org')).m.answers!.map((a) => (a as { data: unknown }).data), ['10.0.0.10']);
    writeFileSync(join(ld.dir, 'fqdn-map.json'), JSON.stringify({ 'www.example.org': 'other.novalocal' }));
    assert.equal(await ld.server.reloadFromFile(), true);
    const { raw, m } = await ask(ld.port, 'www.example.org');
    assert.deepEqual(m.answers!.map((a) => [a.name, (a as { data: unknown }).data]), [['www.example.org', '198.51.100.1']]);
    assert.equal(raw.indexOf('novalocal'), -1);
    assert.equal(up.requests.at(-1)!.packet.questions![0]!.name, 'other.novalocal');
  });
});

test('the answer memo repeats the reverted reply (it is keyed by the client\'s octets, the rewrite made from them)', T, async () => {
  const records = [{ name: 'local.novalocal', type: 'A', ttl: 120, rdata: '10.9.9.9' }];
  await withServer({ config: { answerMemo: true, pipeline: ['decode', 'rewrite', 'records', 'forward'] }, records }, async (ld) => {
    // Within one second, so the second is the memo's (retried on a second boundary).
    for (let attempt = 0; attempt < 5 && ld.server.metrics.get('udp_memo_hits_total') === 0; attempt++) {
      const id = 4000 + attempt * 2;
      const a = await udpExchange(ld.port, buildQuery({ name: 'loc.example.org' }, { id }), { timeoutMs: 3000 });
      const b = await udpExchange(ld.port, buildQuery({ name: 'loc.example.org' }, { id: id + 1 }), { timeoutMs: 3000 });
      assert.ok(a && b);
      assert.deepEqual(b.subarray(2), a.subarray(2));
      assert.equal(b.indexOf('novalocal'), -1);
      assert.deepEqual(decode(b).answers!.map((r) => [r.name, (r as { data: unknown }).data]), [['loc.example.org', '10.9.9.9']]);
    }
    assert.ok(ld.server.metrics.get('udp_memo_hits_total') > 0);
  });
});

test('the query log carries the rewritten name', T, async () => {
  const up = await TestUpstream.start(zone());
  try {
    const ld = await startLineDns({ config: { upstreams: [up.address], rewrite: RULES, pipeline: [{ log: { file: 'queries.log' } }, 'decode', 'rewrite', 'forward'] } });
    try {
      await ask(ld.port, 'www.example.org');
    } finally {
      // Closing the stage flushes the buffered lines.
      await bounded(ld.close(), 'linedns');
    }
    // The file is written asynchronously once the stage closed.
    await new Promise((r) => setTimeout(r, 50));
    const file = join(ld.dir, 'queries.log');
    assert.ok(existsSync(file));
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { name: string; rewrite?: string });
    assert.deepEqual(lines.map((l) => [l.name, l.rewrite]), [['www.example.org', 'foo.novalocal']]);
  } finally {
    await bounded(up.close(), 'the upstream');
  }
});

test('loader: bad names, "*." on one side, duplicate from, chains, rewriteFrom problems, with positions; unknown labels warn', () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'rewrite', 'smartline', 'forward'] }, smartLine: { office: ['127.0.0.2/32'] } });
  // Written by hand so the positions are known: line N of the file is the rule N-3.
  const text = [
    '{',
    '  "upstreams": ["127.0.0.1:9"], "smartLine": "smart-line.json", "rewriteFrom": "map.json",',
    '  "pipeline": ["decode", "rewrite", "smartline", "forward"], "rewrite": [',
    '    {"from": "bad..name", "to": "ok.test"},',
    '    {"from": "*.a.test", "to": "b.test"},',
    '    {"from": "c.test", "to": "d.test"},',
    '    {"from": "c.test", "to": "e.test"},',
    '    {"from": "f.test", "to": "c.test"},',
    '    {"from": "*.g.test", "to": "*.x.g.test"},',
    '    {"from": "h.test", "to": "i.test", "labels": ["office", "nowhere"]}',
    '  ]',
    '}',
  ].join('\n');
  writeFileSync(configFile, text);
  writeFileSync(join(dir, 'map.json'), '{\n  "h.test": "j.test",\n  "*.k.test": "l.test",\n  "m.test": 5\n}\n');
  let issues: string[] = [];
  try {
    loadConfig(configFile);
    assert.fail('loaded');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    issues = err.issues.map(formatIssue).map((l) => l.replace(`${dir}/`, ''));
  }
  const expect = [
    /^linedns\.json:4:14: error: \$\.rewrite\[0\]\.from: "bad\.\.name" has an empty label/,
    /^linedns\.json:5:\d+: error: \$\.rewrite\[1\]: "from" "\*\.a\.test" is a subtree/,
    /^linedns\.json:7:14: error: \$\.rewrite\[3\]\.from: "c\.test" is already rewritten by the rule at .*linedns\.json:6:/,
    /^linedns\.json:8:30: error: \$\.rewrite\[4\]\.to: "c\.test" is rewritten again by the rule at .*linedns\.json:6:/,
    /^linedns\.json:9:\d+: error: \$\.rewrite\[5\]\.to: "\*\.x\.g\.test" is or lies under "\*\.g\.test"/,
    /^linedns\.json:10:\d+: warning: \$\.rewrite\[6\]\.labels\[1\]: label "nowhere" is not a line/,
    /^map\.json:2:\d+: error: .*"h\.test" is already rewritten by the rule at .*linedns\.json:10:/,
    /^map\.json:3:\d+: error: .*the rewriteFrom file holds exact names only/,
    /^map\.json:4:13: error: .*5 is not a name/,
  ];
  for (const re of expect) assert.ok(issues.some((l) => re.test(l)), `no issue matches ${re}:\n${issues.join('\n')}`);
  assert.equal(issues.length, expect.length, issues.join('\n'));
  // Set without the stage in the pipeline: a warning, as for records.
  const unused = writeConfig({ config: { upstreams: ['127.0.0.1:9'], rewrite: [{ from: 'a.test', to: 'b.test' }], pipeline: ['decode', 'forward'] } });
  const { warnings } = loadConfig(unused.configFile);
  assert.ok(warnings.some((w) => w.path === '$.rewrite' && /"rewrite" stage is not in the pipeline/.test(w.message)));
});
