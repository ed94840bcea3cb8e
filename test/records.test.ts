// Unit tests of local data (src/stages/records) and smart-line classification (src/stages/smartline):
// every record type, wildcards, CNAME chains, PTR, actions, NODATA rules and line visibility.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QType, Rcode } from '../src/lib/dns/constants.js';
import { RecordStore, type LocalResult, type Visibility } from '../src/stages/records/store.js';
import { LineTable } from '../src/stages/smartline/lines.js';
import { NO_LINES, ViewRegistry } from '../src/core/views.js';
import type { RecordEntry } from '../src/config/types.js';
import { loadConfig } from '../src/app/config.js';
import { isRejection, parseQuery } from '../src/lib/dns/query.js';
import { silentLogger } from '../src/lib/logger.js';
import { Metrics } from '../src/lib/metrics.js';
import { QueryContext } from '../src/core/context.js';
import { recordsStage } from '../src/stages/records/index.js';
import { buildQuery } from './helpers/client.js';
import { writeConfig } from './helpers/server.js';

const ALL: Visibility = { lines: null, unmatched: 'all' };

function answers(r: LocalResult): string[] {
  if (r.kind !== 'answer') return [`<${r.kind}>`];
  return r.answers.map((a) => `${a.name} ${a.record.type} ${JSON.stringify(a.record.data)}`);
}

const base: RecordEntry[] = [
  { name: 'Example.COM.', type: 'A', rdata: '192.0.2.1' },
  { name: 'example.com', type: 'AAAA', rdata: '2001:db8::1' },
  { name: 'example.com', type: 'MX', rdata: { preference: 10, exchange: 'mail.example.com' } },
  { name: 'example.com', type: 'TXT', rdata: ['v=spf1', '-all'] },
  { name: 'example.com', type: 'NS', rdata: 'ns1.example.com' },
  { name: 'example.com', type: 'CAA', rdata: { flags: 0, tag: 'issue', value: 'ca.example' } },
  { name: '_sip._udp.example.com', type: 'SRV', rdata: { priority: 1, weight: 2, port: 5060, target: 'sip.example.com' } },
  { name: 'alias.example.com', type: 'CNAME', rdata: 'example.com' },
  { name: 'chain.example.com', type: 'CNAME', rdata: 'alias.example.com' },
  { name: 'out.example.com', type: 'CNAME', rdata: 'elsewhere.example.org' },
  { name: 'loop1.example.com', type: 'CNAME', rdata: 'loop2.example.com' },
  { name: 'loop2.example.com', type: 'CNAME', rdata: 'loop1.example.com' },
  { name: '*.apps.example.com', type: 'A', rdata: '192.0.2.80' },
  { name: 'fixed.apps.example.com', type: 'A', rdata: '192.0.2.81' },
  { name: 'ads.example.net', action: 'deny' },
  { name: '*.tracker.example.net', action: 'nxdomain' },
  { name: 'mx-only.example.org', type: 'MX', rdata: { preference: 5, exchange: 'mx.example.org' } },
  { name: 'zone.example', type: 'SOA', ttl: 3600, rdata: { mname: 'ns.zone.example', rname: 'admin.zone.example', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 60 } },
  { name: 'host.zone.example', type: 'A', rdata: '198.51.100.7' },
  { name: 'a.b.zone.example', type: 'TXT', rdata: 'deep' },
];

test('answers every record type, names case-insensitively', () => {
  const s = new RecordStore(base);
  assert.deepEqual(answers(s.lookup('example.com', QType.A, ALL)), ['example.com 1 "192.0.2.1"']);
  assert.deepEqual(answers(s.lookup('example.com', QType.AAAA, ALL)), ['example.com 28 "2001:db8::1"']);
  assert.match(answers(s.lookup('example.com', QType.MX, ALL))[0]!, /mail\.example\.com/);
  assert.deepEqual(answers(s.lookup('example.com', QType.TXT, ALL)), ['example.com 16 ["v=spf1","-all"]']);
  assert.match(answers(s.lookup('example.com', QType.NS, ALL))[0]!, /ns1\.example\.com/);
  assert.match(answers(s.lookup('example.com', QType.CAA, ALL))[0]!, /"tag":"issue"/);
  assert.match(answers(s.lookup('_sip._udp.example.com', QType.SRV, ALL))[0]!, /"port":5060/);
  assert.match(answers(s.lookup('zone.example', QType.SOA, ALL))[0]!, /ns\.zone\.example/);
});

test('CNAME chains are followed inside local data, chains out of it are chased, loops are broken, and CNAME queries get the CNAME', () => {
  const s = new RecordStore(base);
  assert.deepEqual(answers(s.lookup('chain.example.com', QType.A, ALL)), [
    'chain.example.com 5 "alias.example.com"',
    'alias.example.com 5 "example.com"',
    'example.com 1 "192.0.2.1"',
  ]);
  // A chain out of local data is left to the stages after records (chased), a loop is broken.
  const out = s.lookup('out.example.com', QType.A, ALL);
  assert.equal(out.kind, 'chase');
  assert.deepEqual(out.kind === 'chase' ? [out.target, ...out.answers.map((a) => `${a.name} ${a.record.type}`)] : [], ['elsewhere.example.org', 'out.example.com 5']);
  assert.deepEqual(s.lookup('loop1.example.com', QType.A, ALL), { kind: 'broken', reason: 'CNAME loop at loop1.example.com' });
  // Targets that are ours end the chain without a chase: a deny or nxdomain action, a local
  // zone, addresses of the other family; one with records of other types only is chased.
  const ends = new RecordStore([
    { name: 'to-deny.example', type: 'CNAME', rdata: 'blocked.example' },
    { name: 'blocked.example', action: 'deny' },
    { name: 'to-zone.example', type: 'CNAME', rdata: 'missing.zone.example' },
    { name: 'zone.example', type: 'SOA', rdata: { mname: 'ns.zone.example', rname: 'admin.zone.example', minimum: 60 } },
    { name: 'to-v4.example', type: 'CNAME', rdata: 'v4.example' },
    { name: 'v4.example', type: 'A', rdata: '192.0.2.4' },
    { name: 'to-mx.example', type: 'CNAME', rdata: 'mx.example' },
    { name: 'mx.example', type: 'MX', rdata: { preference: 1, exchange: 'mail.example' } },
  ]);
  assert.equal(ends.lookup('to-deny.example', QType.A, ALL).kind, 'answer');
  assert.equal(ends.lookup('to-zone.example', QType.A, ALL).kind, 'answer');
  assert.equal(ends.lookup('to-v4.example', QType.AAAA, ALL).kind, 'answer');
  assert.equal(ends.lookup('to-mx.example', QType.A, ALL).kind, 'chase');
  // Eight links are followed, a ninth is a broken chain.
  const links = (n: number): RecordEntry[] => Array.from({ length: n }, (_, i) => ({ name: `h${i}.example`, type: 'CNAME', rdata: `h${i + 1}.example` }));
  assert.equal(new RecordStore([...links(8), { name: 'h8.example', type: 'A', rdata: '192.0.2.8' }]).lookup('h0.example', QType.A, ALL).kind, 'answer');
  assert.deepEqual(new RecordStore([...links(9), { name: 'h9.example', type: 'A', rdata: '192.0.2.9' }]).lookup('h0.example', QType.A, ALL), { kind: 'broken', reason: 'CNAME chain longer than 8' });
  assert.deepEqual(answers(s.lookup('alias.example.com', QType.CNAME, ALL)), ['alias.example.com 5 "example.com"']);
});

test('wildcards synthesise the queried owner, and an existing name blocks its wildcard', () => {
  const s = new RecordStore(base);
  assert.deepEqual(answers(s.lookup('x.apps.example.com', QType.A, ALL)), ['x.apps.example.com 1 "192.0.2.80"']);
  assert.deepEqual(answers(s.lookup('y.x.apps.example.com', QType.A, ALL)), ['y.x.apps.example.com 1 "192.0.2.80"']);
  assert.deepEqual(answers(s.lookup('fixed.apps.example.com', QType.A, ALL)), ['fixed.apps.example.com 1 "192.0.2.81"']);
  assert.equal(s.lookup('apps.example.com', QType.A, ALL).kind, 'none', 'the wildcard does not cover its parent');
});

test('deny answers REFUSED, nxdomain NXDOMAIN, wildcards included', () => {
  const s = new RecordStore(base);
  const deny = s.lookup('ads.example.net', QType.A, ALL);
  assert.equal(deny.kind, 'action');
  assert.equal(deny.kind === 'action' && deny.rcode, Rcode.REFUSED);
  const nx = s.lookup('t1.tracker.example.net', QType.AAAA, ALL);
  assert.equal(nx.kind === 'action' && nx.rcode, Rcode.NXDOMAIN);
  assert.equal(s.lookup('sub.ads.example.net', QType.A, ALL).kind, 'none', 'deny is for the exact name');
});

test('automatic PTR for local A and AAAA; an explicit PTR wins', () => {
  const s = new RecordStore([
    ...base,
    { name: 'ptr-owner.example.com', type: 'A', rdata: '192.0.2.99' },
    { name: '99.2.0.192.in-addr.arpa', type: 'PTR', rdata: 'explicit.example.com' },
  ]);
  assert.deepEqual(answers(s.lookup('1.2.0.192.in-addr.arpa', QType.PTR, ALL)), ['1.2.0.192.in-addr.arpa 12 "example.com"']);
  assert.deepEqual(answers(s.lookup('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa', QType.PTR, ALL)), [
    '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa 12 "example.com"',
  ]);
  assert.deepEqual(answers(s.lookup('99.2.0.192.in-addr.arpa', QType.PTR, ALL)), ['99.2.0.192.in-addr.arpa 12 "explicit.example.com"']);
});

test('NODATA for the other address family of an overridden name; other types fall through', () => {
  const s = new RecordStore([{ name: 'v4only.example', type: 'A', rdata: '192.0.2.4' }, ...base]);
  const aaaa = s.lookup('v4only.example', QType.AAAA, ALL);
  assert.equal(aaaa.kind, 'answer');
  assert.equal(aaaa.kind === 'answer' && aaaa.answers.length, 0);
  assert.equal(s.lookup('v4only.example', QType.MX, ALL).kind, 'none', 'partly overridden: MX goes upstream');
  assert.equal(s.lookup('mx-only.example.org', QType.A, ALL).kind, 'none');
});

test('inside a local zone (an SOA): NODATA and NXDOMAIN carry the SOA with min(TTL, MINIMUM)', () => {
  const s = new RecordStore(base);
  const nodata = s.lookup('host.zone.example', QType.MX, ALL);
  assert.ok(nodata.kind === 'answer' && nodata.rcode === Rcode.NOERROR && nodata.answers.length === 0);
  assert.equal(nodata.authority[0]!.record.ttl, 60);
  const nx = s.lookup('missing.zone.example', QType.A, ALL);
  assert.ok(nx.kind === 'answer' && nx.rcode === Rcode.NXDOMAIN);
  assert.equal(nx.authority[0]!.name, 'zone.example');
  const ent = s.lookup('b.zone.example', QType.A, ALL);
  assert.ok(ent.kind === 'answer' && ent.rcode === Rcode.NOERROR, 'an empty non-terminal is NODATA, not NXDOMAIN');
});

const lineRecords: RecordEntry[] = [
  { name: 'svc.example', type: 'A', rdata: '10.1.0.1', labels: ['office'] },
  { name: 'svc.example', type: 'A', rdata: '10.2.0.1', labels: ['lab'] },
  { name: 'svc.example', type: 'A', rdata: '203.0.113.1' },
  { name: 'lab-only.example', type: 'A', rdata: '10.2.0.9', labels: ['lab'] },
];

test('line classification: every containing line, most specific first; CIDR count does not matter', () => {
  const table = new LineTable({ office: ['10.0.0.0/8', '2001:db8::/32'], lab: ['10.2.0.0/16'], other: ['192.168.0.0/16'] });
  assert.deepEqual(table.classify('10.2.3.4').lines, ['lab', 'office']);
  assert.deepEqual(table.classify('10.9.3.4').lines, ['office']);
  assert.deepEqual(table.classify('::ffff:10.2.0.1').lines, ['lab', 'office'], 'IPv4-mapped addresses classify as IPv4');
  assert.deepEqual(table.classify('2001:db8::5').lines, ['office']);
  assert.equal(table.classify('172.16.0.1'), NO_LINES);
  assert.equal(table.classify('10.2.0.1').id, table.classify('10.2.200.1').id, 'equal sets are interned');
});

test('visibility: unlabelled always, the most specific line with records wins, no line sees all', () => {
  const s = new RecordStore(lineRecords);
  const table = new LineTable({ office: ['10.0.0.0/8'], lab: ['10.2.0.0/16'] });
  const as = (addr: string, unmatched: 'all' | 'unlabelled' = 'all') => ({ lines: table.classify(addr), unmatched });
  assert.deepEqual(answers(s.lookup('svc.example', QType.A, as('10.2.0.5'))).sort(), ['svc.example 1 "10.2.0.1"', 'svc.example 1 "203.0.113.1"']);
  assert.deepEqual(answers(s.lookup('svc.example', QType.A, as('10.1.0.5'))).sort(), ['svc.example 1 "10.1.0.1"', 'svc.example 1 "203.0.113.1"']);
  assert.equal(answers(s.lookup('svc.example', QType.A, as('192.0.2.1'))).length, 3, 'a client in no line sees every record');
  assert.deepEqual(answers(s.lookup('svc.example', QType.A, as('192.0.2.1', 'unlabelled'))), ['svc.example 1 "203.0.113.1"']);
  assert.equal(s.lookup('lab-only.example', QType.A, as('10.1.0.5')).kind, 'none', 'hidden from office: falls through');
  assert.equal(s.lookup('lab-only.example', QType.A, as('10.2.0.5')).kind, 'answer');
});

test('one name asked with 2000 qtypes: answers stay right across the per-name memo bound', async () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1'] }, records: [{ name: 'one.test', type: 'A', rdata: '192.0.2.1' }] });
  const metrics = new Metrics();
  const stage = await recordsStage.create(undefined, { logger: silentLogger(), metrics, config: loadConfig(configFile).config, views: new ViewRegistry<QueryContext>(), position: { providedBefore: () => false, providedAfter: () => false } });
  let fellThrough = 0;
  for (let t = 1; t < 2000; t++) {
    if (t === 41) continue; // OPT is not a question type (FORMERR at decode)
    const raw = buildQuery({ name: 'one.test', type: `UNKNOWN_${t}` });
    const q = parseQuery(raw);
    assert.ok(!isRejection(q));
    const ctx = new QueryContext(raw, { address: '127.0.0.1', port: 1, family: 'IPv4' }, 'udp', 0);
    ctx.query = q;
    await stage.handle(ctx, () => {
      fellThrough++;
    });
  }
  // A, AAAA (NODATA) and ANY answer locally, every other type falls through, also after the memo was cleared.
  assert.equal(metrics.get('records_answered_total') + fellThrough, 1998);
  assert.equal(metrics.get('records_answered_total'), 3);
});

test('reverse names built on first use still block a wildcard above them (RFC 4592 closest encloser)', () => {
  const s = new RecordStore([
    { name: 'host.example', type: 'A', rdata: '192.0.2.5' },
    { name: '*.0.192.in-addr.arpa', type: 'PTR', rdata: 'wild.example' },
  ]);
  assert.deepEqual(answers(s.lookup('7.1.0.192.in-addr.arpa', QType.PTR, ALL)), ['7.1.0.192.in-addr.arpa 12 "wild.example"']);
  assert.equal(s.lookup('9.2.0.192.in-addr.arpa', QType.PTR, ALL).kind, 'none', '2.0.192.in-addr.arpa exists: the wildcard does not apply below it');
  assert.deepEqual(answers(s.lookup('5.2.0.192.in-addr.arpa', QType.PTR, ALL)), ['5.2.0.192.in-addr.arpa 12 "host.example"']);
});
