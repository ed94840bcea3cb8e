// Targeted purge on reload: purgeFor's diff (which names and subtrees a change of local data
// may affect) and the cache keeping every unrelated entry, counted in upstream queries.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { purgeFor, purges, type PurgeInputs } from '../src/stages/cache/purge.js';
import type { RecordEntry, RewriteRule, RouteConfig, ZoneConfig } from '../src/config/types.js';
import { simpleHandler } from './helpers/upstream.js';
import { withUpstream } from './helpers/server.js';
import { answerData, query } from './helpers/client.js';

const PIPELINE = [{ stage: 'cache', options: {} }, { stage: 'records', options: {} }, { stage: 'forward', options: {} }];

function inputs(over: Partial<PurgeInputs> = {}): PurgeInputs {
  return { pipeline: PIPELINE, records: [], zones: [], smartLine: {}, smartLineUnmatched: 'all', rewrite: [], routes: [], ...over };
}
const a = (name: string, rdata: string, labels?: string[]): RecordEntry => ({ name, type: 'A', rdata, ...(labels ? { labels } : {}) });
const zone = (origin: string, digest: string, labels: string[] | null = null): ZoneConfig => ({ file: `/z/${origin}`, origin, labels, records: [], digest });
const rule = (from: string, to: string, suffix = false, labels: string[] | null = null): RewriteRule => ({ from, to, suffix, labels });
const sorted = (s: ReadonlySet<string>): string[] => [...s].sort();
const route = (zone: string, upstream: string, labels: string[] | null = null): RouteConfig => ({ zone, upstreams: [{ host: upstream, port: 53, protocol: 'udp' }], labels, forceTcp: false, policy: null });

describe('purgeFor: the names a reload may change', () => {
  test('no change: nothing', () => {
    const c = inputs({ records: [a('www.example.com', '192.0.2.1')], zones: [zone('z.test', 'd1')], rewrite: [rule('x.test', 'y.test')] });
    const p = purgeFor(c, inputs({ ...c }));
    assert.equal(p.all, false);
    assert.equal(p.names.size + p.subtrees.size, 0);
  });

  test('a changed record: its name, its ancestors and both reverse names; not its siblings', () => {
    const p = purgeFor(inputs({ records: [a('www.example.com', '192.0.2.1'), a('ftp.example.com', '192.0.2.9')] }), inputs({ records: [a('WWW.example.com.', '192.0.2.2'), a('ftp.example.com', '192.0.2.9')] }));
    assert.deepEqual(sorted(p.names), ['1.2.0.192.in-addr.arpa', '2.2.0.192.in-addr.arpa', 'com', 'example.com', 'www.example.com']);
    assert.equal(p.subtrees.size, 0);
    assert.equal(purges(p, 'ftp.example.com'), false);
    assert.equal(purges(p, 'a.www.example.com'), false);
  });

  test('added and removed records count as changed', () => {
    const p = purgeFor(inputs({ records: [a('old.test', '192.0.2.1')] }), inputs({ records: [a('new.test', '192.0.2.1')] }));
    assert.ok(p.names.has('old.test') && p.names.has('new.test'));
  });

  test('an entry inserted or removed amid others: only its owner (the entries around it are compared, not their positions)', () => {
    const list = [a('one.test', '192.0.2.1'), a('two.test', '192.0.2.2'), a('three.test', '192.0.2.3')];
    const ins = purgeFor(inputs({ records: list }), inputs({ records: [list[0]!, a('new.test', '192.0.2.9'), list[1]!, list[2]!] }));
    assert.deepEqual(sorted(ins.names), ['9.2.0.192.in-addr.arpa', 'new.test', 'test']);
    const del = purgeFor(inputs({ records: list }), inputs({ records: [list[0]!, list[2]!] }));
    assert.deepEqual(sorted(del.names), ['2.2.0.192.in-addr.arpa', 'test', 'two.test']);
    const moved = purgeFor(inputs({ records: list }), inputs({ records: [list[2]!, list[0]!, list[1]!] }));
    assert.equal(moved.names.size + moved.subtrees.size, 0, 'other owners in another order: each owner\'s own entries are the same');
  });

  test('a changed wildcard drops everything under its domain; an owner under a wildcard domain, its subtree', () => {
    const p = purgeFor(inputs({ records: [a('*.apps.test', '192.0.2.1')] }), inputs({ records: [a('*.apps.test', '192.0.2.2')] }));
    assert.deepEqual(sorted(p.subtrees), ['apps.test']);
    assert.ok(purges(p, 'x.y.apps.test') && purges(p, 'apps.test'));
    assert.equal(purges(p, 'other.test'), false);
    const q = purgeFor(inputs({ records: [a('*.apps.test', '192.0.2.1')] }), inputs({ records: [a('*.apps.test', '192.0.2.1'), a('b.apps.test', '192.0.2.3')] }));
    assert.deepEqual(sorted(q.subtrees), ['b.apps.test'], 'b.apps.test now blocks the wildcard for names under it');
  });

  test('a zone whose digest changed: its subtree; another zone untouched', () => {
    const p = purgeFor(inputs({ zones: [zone('z.test', 'd1'), zone('y.test', 'd9')] }), inputs({ zones: [zone('z.test', 'd2'), zone('y.test', 'd9')] }));
    assert.deepEqual(sorted(p.subtrees), ['z.test']);
    assert.ok(purges(p, 'deep.www.z.test'));
    assert.equal(purges(p, 'www.y.test'), false);
  });

  test('a changed rewrite rule: both sides (subtrees for a suffix rule)', () => {
    const p = purgeFor(inputs({ rewrite: [rule('a.test', 'b.test'), rule('s.test', 't.test', true)] }), inputs({ rewrite: [rule('a.test', 'c.test'), rule('s.test', 'u.test', true)] }));
    assert.deepEqual(sorted(p.names), ['a.test', 'b.test', 'c.test']);
    assert.deepEqual(sorted(p.subtrees), ['s.test', 't.test', 'u.test']);
  });

  test('other lines: only names with labelled data', () => {
    const records = [a('split.test', '10.0.0.1', ['inside']), a('plain.test', '192.0.2.1')];
    const p = purgeFor(inputs({ records, smartLine: { inside: ['10.0.0.0/8'] } }), inputs({ records, smartLine: { inside: ['10.1.0.0/16'] } }));
    assert.ok(p.names.has('split.test'));
    assert.equal(p.names.has('plain.test'), false);
  });

  test('a local CNAME whose target changed, and a rewrite whose target changed, go too', () => {
    const cname: RecordEntry = { name: 'alias.test', type: 'CNAME', rdata: 'target.test' };
    const rw = [rule('from.test', 'target.test'), rule('s.test', 'deep.test', true)];
    const p = purgeFor(
      inputs({ records: [cname, a('target.test', '192.0.2.1'), a('x.deep.test', '192.0.2.5')], rewrite: rw }),
      inputs({ records: [cname, a('target.test', '192.0.2.2'), a('x.deep.test', '192.0.2.6')], rewrite: rw }),
    );
    assert.ok(p.names.has('alias.test'), 'CNAME owner');
    assert.ok(p.names.has('from.test'), 'exact rewrite');
    assert.ok(p.names.has('x.s.test'), 'suffix rewrite maps the name');
  });

  test('a route added, removed or changed (its lines, its upstreams): its zone\'s subtree; the top-level upstreams are not compared', () => {
    const corp = route('corp.example', '10.0.0.53', ['office']);
    assert.deepEqual(sorted(purgeFor(inputs(), inputs({ routes: [corp] })).subtrees), ['corp.example']);
    assert.deepEqual(sorted(purgeFor(inputs({ routes: [corp] }), inputs()).subtrees), ['corp.example']);
    // Guests taken off the internal resolver: what they were answered from it goes.
    const narrower = purgeFor(inputs({ routes: [route('corp.example', '10.0.0.53', ['office', 'guest'])] }), inputs({ routes: [corp] }));
    assert.deepEqual(sorted(narrower.subtrees), ['corp.example']);
    assert.equal(purges(narrower, 'intranet.corp.example'), true);
    assert.equal(purges(narrower, 'www.example'), false);
    assert.deepEqual(sorted(purgeFor(inputs({ routes: [corp] }), inputs({ routes: [route('corp.example', '10.0.0.54', ['office'])] })).subtrees), ['corp.example']);
    assert.deepEqual(sorted(purgeFor(inputs({ routes: [corp] }), inputs({ routes: [corp] })).subtrees), []);
    // A labelled route for the root ("." for guests): everything.
    assert.equal(purges(purgeFor(inputs(), inputs({ routes: [route('', '192.0.2.53', ['guest'])] })), 'anything.test'), true);
    // Other lines: the labelled routes' zones go.
    assert.deepEqual(sorted(purgeFor(inputs({ routes: [corp], smartLine: { office: ['10.0.0.0/8'] } }), inputs({ routes: [corp], smartLine: { office: ['10.1.0.0/16'] } })).subtrees), ['corp.example']);
  });

  test('another list of stages: everything', () => {
    assert.equal(purgeFor(inputs(), inputs({ pipeline: PIPELINE.slice(1) })).all, true);
  });
});

describe('the cache on reload', { timeout: 30_000 }, () => {
  test('a record change drops that name only: the others stay cached (counted upstream queries)', async () => {
    await withUpstream(simpleHandler('203.0.113.7'), { config: { answerMemo: false }, records: [a('local.test', '192.0.2.1')] }, async (ld, up) => {
      const names = ['one.example', 'two.example', 'three.example', 'new.example'];
      for (const n of names) await query(ld.port, { name: n });
      await query(ld.port, { name: 'local.test' });
      assert.equal(up.requests.length, names.length);
      // new.example becomes local; local.test changes; the other names are untouched.
      writeFileSync(join(ld.dir, 'records.json'), JSON.stringify([a('local.test', '192.0.2.2'), a('new.example', '192.0.2.3')]));
      assert.equal(await ld.server.reloadFromFile(), true);
      assert.deepEqual(answerData(await query(ld.port, { name: 'local.test' })), ['192.0.2.2']);
      assert.deepEqual(answerData(await query(ld.port, { name: 'new.example' })), ['192.0.2.3'], 'the upstream answer cached for it is gone');
      for (const n of ['one.example', 'two.example', 'three.example']) assert.deepEqual(answerData(await query(ld.port, { name: n })), ['203.0.113.7']);
      assert.equal(up.requests.length, names.length, 'no name unrelated to the change was asked again');
      assert.equal(ld.server.metrics.get('cache_hits_total'), 3);
    });
  });

  test('a record removed: the name goes upstream again, once', async () => {
    await withUpstream(simpleHandler('203.0.113.7'), { config: { answerMemo: false }, records: [a('gone.test', '192.0.2.1')] }, async (ld, up) => {
      assert.deepEqual(answerData(await query(ld.port, { name: 'gone.test' })), ['192.0.2.1']);
      await query(ld.port, { name: 'kept.example' });
      writeFileSync(join(ld.dir, 'records.json'), '[]');
      assert.equal(await ld.server.reloadFromFile(), true);
      assert.deepEqual(answerData(await query(ld.port, { name: 'gone.test' })), ['203.0.113.7']);
      await query(ld.port, { name: 'kept.example' });
      assert.deepEqual(up.requests.map((r) => r.packet.questions![0]!.name), ['kept.example', 'gone.test']);
    });
  });
});
