// The cache stage on real loopback sockets: its options (entry over top-level, defaults), the
// LRU bound, what is and is not stored, its counters, and reloads in place that keep its entries.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/app/config.js';
import type { CacheOptions } from '../../src/stages/cache/options.js';
import type { Stage } from '../../src/core/stage.js';
import { udpExchange } from '../helpers/client.js';
import { mustParse, rawQuery, type CheckedMessage } from '../helpers/packets.js';
import { stageOptions, withUpstream, writeConfig, type Running } from '../helpers/server.js';
import { simpleHandler, TestUpstream, type UpstreamHandler } from '../helpers/upstream.js';
import { ask, withRig } from '../helpers/split.js';

const T = { timeout: 30_000 };

/** A loopback upstream and linedns with `config` (answerMemo off unless given, so repeats reach the cache). */
async function withServer(handler: UpstreamHandler, config: Record<string, unknown>, body: (ld: Running, up: TestUpstream) => Promise<void>, records?: unknown[]): Promise<void> {
  await withUpstream(handler, { config: { answerMemo: false, forward: { timeout: 300, deadline: 900 }, ...config }, records }, body);
}

let nextId = 100;

async function askType(port: number, name: string, type: number): Promise<CheckedMessage> {
  const id = nextId++;
  const m = mustParse(await udpExchange(port, rawQuery(name, type, { id }), { timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

const asked = (up: TestUpstream, name: string): number => up.requests.filter((r) => r.packet.questions?.[0]?.name === name).length;

/** Rewrites linedns.json of a running server and reloads it in place. */
async function reloadWith(ld: Running, config: Record<string, unknown>): Promise<void> {
  writeFileSync(ld.configFile, JSON.stringify({ listen: ['127.0.0.1:0'], ...config }, null, 2));
  assert.equal(await ld.server.reloadFromFile(), true, 'the reload was refused');
}

test('options: defaults from the schema; the entry wins over the top-level "cache" key, key by key', () => {
  const up = ['127.0.0.1:9'];
  const defaults = loadConfig(writeConfig({ config: { upstreams: up } }).configFile).config;
  // Serve-stale and prefetch as RFC 8767 and Unbound have them: stale for a day, after 1.8 s, rechecked every 30 s; no prefetch.
  const rest = { staleTtl: 86400, staleClientTimeout: 1800, staleRefreshInterval: 30, prefetch: 0, prefetchPercent: 10 };
  assert.deepEqual(stageOptions<CacheOptions>(defaults, 'cache'), { maxEntries: 100000, minTtl: 0, maxTtl: 86400, negativeTtl: 900, ...rest });
  const topLevel = loadConfig(writeConfig({ config: { upstreams: up, cache: { maxTtl: 60, negativeTtl: 30, prefetch: 5 } } }).configFile).config;
  assert.deepEqual(stageOptions<CacheOptions>(topLevel, 'cache'), { maxEntries: 100000, minTtl: 0, maxTtl: 60, negativeTtl: 30, ...rest, prefetch: 5 });
  const both = loadConfig(writeConfig({ config: { upstreams: up, cache: { maxTtl: 60, negativeTtl: 30, staleTtl: 0 }, pipeline: ['decode', { cache: { maxTtl: 30, staleTtl: 600 } }, 'forward'] } }).configFile).config;
  assert.deepEqual(stageOptions<CacheOptions>(both, 'cache'), { maxEntries: 100000, minTtl: 0, maxTtl: 30, negativeTtl: 30, ...rest, staleTtl: 600 });
});

test('maxTtl and minTtl clamp what the client sees: the entry form over the top-level form', T, async () => {
  // The upstream's TTL is 300 (withRig).
  const cases: Array<{ config: Record<string, unknown>; ttl: number }> = [
    { config: { cache: { maxTtl: 60 } }, ttl: 60 },
    { config: { cache: { maxTtl: 60 }, pipeline: ['decode', { cache: { maxTtl: 30 } }, 'forward'] }, ttl: 30 },
    { config: { pipeline: ['decode', { cache: { minTtl: 400 } }, 'forward'] }, ttl: 400 },
  ];
  for (const c of cases) {
    await withRig({ config: { ...c.config, answerMemo: false } }, async (rig) => {
      const first = await ask(rig.ld.port, 'clamp.example', '127.0.0.1');
      const second = await ask(rig.ld.port, 'clamp.example', '127.0.0.1');
      assert.equal(first.records[0]!.ttl, c.ttl, JSON.stringify(c.config));
      assert.ok(second.records[0]!.ttl <= c.ttl && second.records[0]!.ttl >= c.ttl - 2, `repeat TTL ${second.records[0]!.ttl}`);
      assert.equal(rig.up.requests.length, 1, 'the repeat came from the cache');
    });
  }
});

test('maxEntries 0 turns the cache off: every query goes upstream, no counter moves', T, async () => {
  await withRig({ config: { cache: { maxEntries: 0 }, answerMemo: false } }, async (rig) => {
    for (let i = 0; i < 3; i++) assert.equal((await ask(rig.ld.port, 'off.example', '127.0.0.1')).records.length, 1);
    assert.equal(rig.up.requests.length, 3);
    for (const c of ['cache_hits_total', 'cache_misses_total', 'cache_stores_total', 'cache_entries']) assert.equal(rig.metric(c), 0, c);
  });
});

test('counters: a miss stores the upstream answer, repeats are hits; a local answer is kept but not counted as stored', T, async () => {
  const records = [{ name: 'local.example', type: 'A', rdata: '192.0.2.1' }];
  await withServer(simpleHandler(), {}, async (ld, up) => {
    const metric = (n: string): number => ld.server.metrics.get(n);
    await ask(ld.port, 'up.example', '127.0.0.1');
    assert.deepEqual([metric('cache_misses_total'), metric('cache_stores_total'), metric('cache_entries'), metric('cache_hits_total')], [1, 1, 1, 0]);
    await ask(ld.port, 'UP.example', '127.0.0.1');
    assert.equal(metric('cache_hits_total'), 1, 'names are matched case-insensitively');
    await ask(ld.port, 'local.example', '127.0.0.1');
    await ask(ld.port, 'local.example', '127.0.0.1');
    assert.deepEqual([metric('cache_misses_total'), metric('cache_stores_total'), metric('cache_entries'), metric('cache_hits_total')], [2, 1, 2, 2]);
    assert.equal(metric('records_answered_total'), 1, 'the repeat of the local answer came from the cache');
    assert.equal(asked(up, 'up.example'), 1);
  }, records);
});

test('maxEntries counts answers, not names, and the least recently used name goes first', T, async () => {
  // simpleHandler: A gets an address, any other type NODATA with an SOA (cached too).
  await withServer(simpleHandler(), { cache: { maxEntries: 2 } }, async (ld, up) => {
    await askType(ld.port, 'pair.example', 1);
    await askType(ld.port, 'pair.example', 28);
    assert.equal(ld.server.metrics.get('cache_entries'), 2, 'A and AAAA of one name weigh two');
    await askType(ld.port, 'a.example', 1); // pushes out the whole pair.example chain
    assert.equal(ld.server.metrics.get('cache_evictions_total'), 2, 'evictions count answers, as maxEntries does');
    await askType(ld.port, 'b.example', 1);
    await askType(ld.port, 'a.example', 1); // a hit: a is now the most recently used
    await askType(ld.port, 'c.example', 1); // evicts b
    assert.equal(ld.server.metrics.get('cache_entries'), 2);
    assert.equal(ld.server.metrics.get('cache_evictions_total'), 3);
    await askType(ld.port, 'a.example', 1);
    assert.equal(asked(up, 'a.example'), 1, 'a stayed cached');
    await askType(ld.port, 'b.example', 1);
    assert.equal(asked(up, 'b.example'), 2, 'b was evicted');
    await askType(ld.port, 'pair.example', 1);
    assert.equal(asked(up, 'pair.example'), 3);
  });
});

test('cache_evictions_total counts only answers pushed out for room: not replacements, flushes or reloads', T, async () => {
  await withServer(simpleHandler(), { cache: { maxEntries: 10 } }, async (ld, up) => {
    const evictions = (): number => ld.server.metrics.get('cache_evictions_total');
    await askType(ld.port, 'a.example', 1);
    await askType(ld.port, 'a.example', 28); // the chain of a.example set again: a replacement
    await askType(ld.port, 'b.example', 1);
    assert.equal(ld.server.metrics.get('cache_entries'), 3);
    const cache = (): NonNullable<Stage['admin']> => ld.server.stages().find((s) => s.name === 'cache')!.admin!;
    assert.equal(cache().flush('b.example'), 1);
    await reloadWith(ld, { upstreams: [up.address], answerMemo: false, forward: { timeout: 300, deadline: 900 }, cache: { maxEntries: 20 } });
    assert.equal(cache().flush(), 2);
    assert.equal(evictions(), 0);
  });
});

test('not cached: an NXDOMAIN without an SOA and a SERVFAIL; an NXDOMAIN with one is (RFC 2308)', T, async () => {
  const handler: UpstreamHandler = (req) => {
    const name = req.packet.questions![0]!.name;
    if (name === 'nosoa.example') return { flags: 0x8180 | 3 };
    if (name === 'fail.example') return { flags: 0x8180 | 2 };
    return simpleHandler()(req);
  };
  await withServer(handler, {}, async (ld, up) => {
    for (let i = 0; i < 2; i++) {
      assert.equal((await ask(ld.port, 'nosoa.example', '127.0.0.1')).rcode, 3);
      assert.equal((await ask(ld.port, 'fail.example', '127.0.0.1')).rcode, 2);
      const nx = await ask(ld.port, 'nx.soa.example', '127.0.0.1');
      assert.equal(nx.rcode, 3);
      assert.ok(nx.records.some((r) => r.section === 1 && r.type === 6), 'the SOA reaches the client');
    }
    assert.equal(asked(up, 'nosoa.example'), 2);
    assert.ok(asked(up, 'fail.example') >= 2, 'SERVFAIL is asked again');
    assert.equal(asked(up, 'nx.soa.example'), 1, 'the NXDOMAIN with an SOA was cached');
    assert.equal(ld.server.metrics.get('cache_entries'), 1);
  });
});

test('negativeTtl caps how long a negative answer is kept and the TTLs its client sees', T, async () => {
  // The upstream's SOA has TTL and MINIMUM 60.
  await withServer(simpleHandler(), { pipeline: ['decode', { cache: { negativeTtl: 5 } }, 'forward'], cache: { negativeTtl: 900 } }, async (ld) => {
    const nx = await ask(ld.port, 'nx.neg.example', '127.0.0.1');
    const soa = nx.records.find((r) => r.type === 6);
    assert.equal(soa?.ttl, 5);
  });
});

test('reload in place: new sizes and TTL bounds keep the entries; a smaller maxEntries keeps the most recently used', T, async () => {
  const pipeline = ['decode', 'cache', 'forward'];
  await withServer(simpleHandler(), { pipeline, cache: { maxEntries: 10 } }, async (ld, up) => {
    const base = { upstreams: [up.address], answerMemo: false, forward: { timeout: 300, deadline: 900 } };
    for (const n of ['a', 'b', 'c', 'a']) await ask(ld.port, `${n}.example`, '127.0.0.1');
    assert.equal(ld.server.metrics.get('cache_entries'), 3);
    await reloadWith(ld, { ...base, pipeline, cache: { maxEntries: 20, maxTtl: 3600 } });
    assert.equal(ld.server.metrics.get('cache_entries'), 3, 'entries kept across a reload of the cache options');
    for (const n of ['b', 'c', 'a']) await ask(ld.port, `${n}.example`, '127.0.0.1'); // a is the most recent
    assert.equal(up.requests.length, 3, 'all three came from the cache after the reload');
    // The same stages, the entry's maxEntries over the top-level one.
    await reloadWith(ld, { ...base, pipeline: ['decode', { cache: { maxEntries: 2 } }, 'forward'], cache: { maxEntries: 20 } });
    assert.equal(ld.server.metrics.get('cache_entries'), 2);
    await ask(ld.port, 'a.example', '127.0.0.1');
    await ask(ld.port, 'c.example', '127.0.0.1');
    assert.equal(up.requests.length, 3, 'the two most recently used were kept');
    await ask(ld.port, 'b.example', '127.0.0.1');
    assert.equal(asked(up, 'b.example'), 2, 'the least recently used was dropped');
  });
});

test("other stages' new options (an allow list, an upstream timeout, trustEcsFrom) keep the entries", T, async () => {
  await withServer(simpleHandler(), {}, async (ld, up) => {
    await ask(ld.port, 'a.example', '127.0.0.1');
    assert.equal(ld.server.metrics.get('cache_entries'), 1);
    await reloadWith(ld, { upstreams: [up.address], answerMemo: false, forward: { timeout: 400, deadline: 900 }, allow: ['127.0.0.0/8'], trustEcsFrom: ['127.0.0.9/32'] });
    assert.equal(ld.server.metrics.get('cache_entries'), 1);
    await ask(ld.port, 'a.example', '127.0.0.1');
    assert.equal(asked(up, 'a.example'), 1, 'answered from the entry kept across the reload');
  });
});

test('reload in place to maxEntries 0: the cache is off and holds nothing', T, async () => {
  await withServer(simpleHandler(), {}, async (ld, up) => {
    await ask(ld.port, 'a.example', '127.0.0.1');
    await ask(ld.port, 'b.example', '127.0.0.1');
    await reloadWith(ld, { upstreams: [up.address], answerMemo: false, forward: { timeout: 300, deadline: 900 }, cache: { maxEntries: 0 } });
    assert.equal(ld.server.metrics.get('cache_entries'), 0);
    await ask(ld.port, 'b.example', '127.0.0.1');
    assert.equal(asked(up, 'b.example'), 2);
  });
});

test('a reload that changes the stages starts a new, empty cache, and cache_entries says so', T, async () => {
  await withServer(simpleHandler(), {}, async (ld, up) => {
    await ask(ld.port, 'a.example', '127.0.0.1');
    assert.equal(ld.server.metrics.get('cache_entries'), 1);
    await reloadWith(ld, { upstreams: [up.address], answerMemo: false, forward: { timeout: 300, deadline: 900 }, pipeline: ['decode', 'cache', 'forward'] });
    assert.equal(ld.server.metrics.get('cache_entries'), 0);
    await ask(ld.port, 'a.example', '127.0.0.1');
    assert.equal(asked(up, 'a.example'), 2);
  });
});

test('a reload that changes the lines drops the names with labelled data, upstream answers included; others stay', T, async () => {
  const records = [{ name: 'split.example', type: 'A', rdata: '10.0.0.1', labels: ['internal'] }];
  await withRig({ config: { answerMemo: false, smartLineUnmatched: 'unlabelled' }, smartLine: { internal: ['127.0.0.2/32'] }, records }, async (rig) => {
    assert.equal((await ask(rig.ld.port, 'public.example', '127.0.0.1')).records.length, 1);
    // Hidden from this client: the upstream answer is kept for its view.
    assert.equal((await ask(rig.ld.port, 'split.example', '127.0.0.1')).records.length, 1);
    assert.equal(rig.up.requests.length, 2);
    writeFileSync(join(rig.ld.dir, 'smart-line.json'), JSON.stringify({ internal: ['127.0.0.3/32'] }));
    assert.equal(await rig.ld.server.reloadFromFile(), true);
    assert.equal(rig.metric('cache_entries'), 1, 'split.example dropped, public.example kept');
    await ask(rig.ld.port, 'public.example', '127.0.0.1');
    await ask(rig.ld.port, 'split.example', '127.0.0.1');
    assert.equal(rig.up.requests.length, 3, 'only split.example asked again');
  });
});
