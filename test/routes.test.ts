// forward's routes on real sockets: longest zone on label boundaries, labelled routes for their lines
// only (cached per view), forceTcp, a route's policy, reload, explain, and the checks of `routes`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../src/app/config.js';
import { explain } from '../src/app/explain.js';
import { ConfigError, type ConfigIssue } from '../src/config/load.js';
import { udpExchange } from './helpers/client.js';
import { aRecords, mustParse, rawQuery } from './helpers/packets.js';
import { bounded, startLineDns, writeConfig, type TestFiles } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';

const OFFICE = '127.0.0.2';
const GUEST = '127.0.0.3';
const SMART_LINE = { office: [`${OFFICE}/32`], guest: [`${GUEST}/32`] };

let nextId = 1;

/** The A answer's address for `name` asked from `from`. */
async function answerFor(port: number, name: string, from: string): Promise<string> {
  const m = mustParse(await udpExchange(port, rawQuery(name, 1, { id: nextId++ & 0xffff }), { from, timeoutMs: 3000 }), `reply for ${name}`);
  const a = aRecords(m);
  assert.equal(a.length, 1, `${name} from ${from}: ${JSON.stringify(a)} (rcode ${m.rcode})`);
  return a[0]!.split(' ')[1]!;
}

/** Upstreams, each answering every A question with its own address. */
const NAMES = ['root', 'cluster', 'corpPublic', 'corpInternal', 'guests', 'tcp'] as const;
type Name = (typeof NAMES)[number];
const ADDRESS: Record<Name, string> = { root: '192.0.2.1', cluster: '192.0.2.2', corpPublic: '192.0.2.3', corpInternal: '192.0.2.4', guests: '192.0.2.5', tcp: '192.0.2.6' };

test('routes: longest zone on label boundaries, labelled routes only for their lines (cached per view), forceTcp', async (t) => {
  const ups = {} as Record<Name, TestUpstream>;
  for (const n of NAMES) ups[n] = await TestUpstream.start(simpleHandler(ADDRESS[n]));
  const ld = await startLineDns({
    smartLine: SMART_LINE,
    config: {
      upstreams: [ups.root.address],
      routes: [
        { zone: 'cluster.local', upstreams: [ups.cluster.address] },
        { zone: 'corp.example', upstreams: [ups.corpPublic.address] },
        // Written another way than the one above: the zone is compared canonical.
        { zone: 'Corp.Example.', upstreams: [ups.corpInternal.address], labels: ['office'] },
        { zone: '.', upstreams: [ups.guests.address], labels: ['guest'] },
        { zone: 'tcp.test', upstreams: [ups.tcp.address], forceTcp: true },
      ],
      pipeline: ['decode', 'cache', 'smartline', 'forward'],
    },
  });
  t.after(async () => {
    await bounded(ld.close(), 'linedns');
    for (const n of NAMES) await bounded(ups[n].close(), n);
  });
  const p = ld.port;
  // Unlabelled routes, for every client.
  for (const from of [OFFICE, GUEST, '127.0.0.9']) {
    assert.equal(await answerFor(p, `svc${from}.ns.svc.cluster.local`, from), ADDRESS.cluster);
    assert.equal(await answerFor(p, `x${from}.tcp.test`, from), ADDRESS.tcp);
  }
  assert.equal(await answerFor(p, 'cluster.local', '127.0.0.9'), ADDRESS.cluster, 'the zone itself');
  assert.equal(await answerFor(p, 'notcluster.local', '127.0.0.9'), ADDRESS.root, 'a label boundary, not a string suffix');
  assert.equal(await answerFor(p, 'local', '127.0.0.9'), ADDRESS.root);
  assert.ok(ups.tcp.requests.every((q) => q.protocol === 'tcp') && ups.tcp.requests.length === 3, 'forceTcp: every attempt over TCP');

  // corp.example: staff to the internal resolver, everyone else to the public one.
  assert.equal(await answerFor(p, 'www.corp.example', GUEST), ADDRESS.corpPublic);
  assert.equal(await answerFor(p, 'www.corp.example', OFFICE), ADDRESS.corpInternal, 'not the guest answer from the cache');
  assert.equal(await answerFor(p, 'a.b.www.corp.example', OFFICE), ADDRESS.corpInternal);
  assert.equal(await answerFor(p, 'www.corp.example', '127.0.0.9'), ADDRESS.corpPublic, 'a client in no line');
  // Cached, each view its own answer.
  assert.equal(await answerFor(p, 'www.corp.example', GUEST), ADDRESS.corpPublic);
  assert.equal(await answerFor(p, 'www.corp.example', OFFICE), ADDRESS.corpInternal);
  // "." labelled guest: guests' other names go to the guest resolver, the rest to the top level.
  assert.equal(await answerFor(p, 'www.example.org', GUEST), ADDRESS.guests);
  assert.equal(await answerFor(p, 'www.example.org', OFFICE), ADDRESS.root);

  // Guests never reach the internal resolver; it saw exactly the office's two uncached names.
  assert.deepEqual(ups.corpInternal.requests.map((q) => `${q.packet.questions![0]!.name} ${q.rinfo.address}`).sort(), ['a.b.www.corp.example 127.0.0.1', 'www.corp.example 127.0.0.1']);
  assert.equal(ups.corpPublic.requests.length, 2, 'guest and no-line clients: one query each, the repeat from the cache');
});

test("routes: a route's own policy overrides forward's", async (t) => {
  const a = await TestUpstream.start(simpleHandler('192.0.2.1'));
  const b = await TestUpstream.start(simpleHandler('192.0.2.2'));
  const ld = await startLineDns({
    config: {
      upstreams: [a.address, b.address],
      routes: [{ zone: 'rr.test', upstreams: [a.address, b.address], policy: 'round_robin' }],
      pipeline: ['decode', 'forward'],
      answerMemo: false,
    },
  });
  t.after(async () => {
    await bounded(ld.close(), 'linedns');
    await bounded(a.close(), 'a');
    await bounded(b.close(), 'b');
  });
  const got: string[] = [];
  for (let i = 0; i < 6; i++) got.push(await answerFor(ld.port, `n${i}.rr.test`, '127.0.0.1'));
  assert.deepEqual(got, ['192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.2', '192.0.2.1', '192.0.2.2']);
  for (let i = 0; i < 4; i++) assert.equal(await answerFor(ld.port, `n${i}.other.test`, '127.0.0.1'), '192.0.2.1', 'the top level stays sequential');
});

test('routes: a reload applies new routes in place', async (t) => {
  const a = await TestUpstream.start(simpleHandler('192.0.2.1'));
  const b = await TestUpstream.start(simpleHandler('192.0.2.2'));
  const config = { listen: ['127.0.0.1:0'], upstreams: [a.address], pipeline: ['decode', 'forward'], answerMemo: false };
  const ld = await startLineDns({ config });
  t.after(async () => {
    await bounded(ld.close(), 'linedns');
    await bounded(a.close(), 'a');
    await bounded(b.close(), 'b');
  });
  assert.equal(await answerFor(ld.port, 'x.svc.cluster.local', '127.0.0.1'), '192.0.2.1');
  const stages = ld.server.engine.stages;
  writeFileSync(ld.configFile, JSON.stringify({ ...config, routes: [{ zone: 'cluster.local', upstreams: [b.address] }] }));
  assert.equal(await ld.server.reloadFromFile(), true);
  assert.equal(ld.server.engine.stages, stages, 'reloaded in place, not rebuilt');
  assert.equal(await answerFor(ld.port, 'y.svc.cluster.local', '127.0.0.1'), '192.0.2.2');
  assert.equal(await answerFor(ld.port, 'example.org', '127.0.0.1'), '192.0.2.1');
});

test('explain names the route and why', async () => {
  const { configFile } = writeConfig({
    smartLine: SMART_LINE,
    config: {
      upstreams: ['127.0.0.1:9'],
      routes: [
        { zone: 'corp.example', upstreams: ['127.0.0.1:10'] },
        { zone: 'corp.example', upstreams: ['127.0.0.1:11', { address: '127.0.0.1', port: 12, protocol: 'tcp' }], labels: ['office'] },
      ],
      pipeline: ['decode', 'smartline', 'forward'],
    },
  });
  const { config } = loadConfig(configFile);
  const staff = await explain(config, { name: 'www.corp.example', type: 'A', client: OFFICE });
  assert.equal(staff.route, 'corp.example@office');
  assert.ok(staff.trace.includes("forward: route corp.example@office: the client's lines (office) include its labels"), staff.trace.join('\n'));
  assert.ok(staff.trace.includes('forward: offline: would ask 127.0.0.1:11/udp, then 127.0.0.1:12/tcp'), staff.trace.join('\n'));
  const guest = await explain(config, { name: 'www.corp.example', type: 'A', client: GUEST });
  assert.equal(guest.route, 'corp.example');
  assert.ok(guest.trace.some((l) => l.startsWith('forward: route corp.example@office skipped')), guest.trace.join('\n'));
  assert.ok(guest.trace.includes('forward: route corp.example: the longest zone with a route for every client'));
  const other = await explain(config, { name: 'www.example.org', type: 'A', client: OFFICE });
  assert.equal(other.route, '.');
  assert.ok(other.trace.includes('forward: route . (the top-level upstreams): no zone of "routes" matches for this client'));
});

/** Every issue of loading `files`: the warnings of a valid config, or all of a refused one. */
function issues(files: TestFiles): ConfigIssue[] {
  const { configFile } = writeConfig(files);
  try {
    return loadConfig(configFile).warnings;
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
}

const UP = ['127.0.0.1:9'];
const codes = (files: TestFiles): string[] => issues(files).map((i) => `${i.code} ${i.path}`);

test('check: routes are parsed with the upstreams forms; overlapping and unreachable routes are refused', () => {
  const { configFile } = writeConfig({
    smartLine: SMART_LINE,
    config: {
      upstreams: UP,
      routes: [
        { zone: 'Cluster.Local.', upstreams: ['127.0.0.1:53', { address: '::1', port: 5353, protocol: 'tcp' }], forceTcp: true, policy: 'random' },
        { zone: '.', upstreams: ['127.0.0.1:54'], labels: ['guest'] },
      ],
      pipeline: ['decode', 'smartline', 'forward'],
    },
  });
  assert.deepEqual(loadConfig(configFile).config.routes, [
    { zone: 'cluster.local', upstreams: [{ host: '127.0.0.1', port: 53, protocol: 'udp' }, { host: '::1', port: 5353, protocol: 'tcp' }], labels: null, forceTcp: true, policy: 'random' },
    { zone: '', upstreams: [{ host: '127.0.0.1', port: 54, protocol: 'udp' }], labels: ['guest'], forceTcp: false, policy: null },
  ]);

  const lined = (routes: unknown[], pipeline = ['decode', 'smartline', 'forward']): TestFiles => ({ smartLine: SMART_LINE, config: { upstreams: UP, routes, pipeline } });
  // The same zone and labels twice, however spelt and ordered.
  assert.deepEqual(
    codes(lined([
      { zone: 'a.test', upstreams: UP, labels: ['office', 'guest'] },
      { zone: 'A.test.', upstreams: UP, labels: ['guest', 'office'] },
      { zone: 'a.test', upstreams: UP },
      { zone: 'a.test', upstreams: UP },
    ])),
    ['LDNS_ROUTE_DUPLICATE $.routes[1].zone', 'LDNS_ROUTE_DUPLICATE $.routes[3].zone'],
  );
  assert.deepEqual(codes(lined([{ zone: '.', upstreams: UP }])), ['LDNS_ROUTE_DUPLICATE $.routes[0].zone'], 'an unlabelled "." is the top-level upstreams');
  assert.deepEqual(codes(lined([{ zone: 'a.test', upstreams: UP, labels: ['office', 'staff'] }])), ['LDNS_ROUTE_UNKNOWN_LABEL $.routes[0].labels[1]']);
  assert.deepEqual(codes(lined([{ zone: 'a..test', upstreams: UP }])), ['LDNS_ROUTE_ZONE $.routes[0].zone']);
  assert.deepEqual(codes(lined([{ zone: 'a.test', upstreams: [] }])), ['LDNS_SCHEMA_SIZE $.routes[0].upstreams']);
  assert.deepEqual(codes(lined([{ zone: 'a.test', upstreams: ['dns.example'] }])), ['LDNS_BAD_ADDRESS $.routes[0].upstreams[0]']);
  assert.deepEqual(codes(lined([{ zone: 'a.test', upstreams: UP, policy: 'fast' }])), ['LDNS_SCHEMA_ENUM $.routes[0].policy']);
  assert.deepEqual(codes({ config: { listen: ['127.0.0.1:5399'], upstreams: UP, routes: [{ zone: 'a.test', upstreams: ['127.0.0.1:5399'] }] } }), ['LDNS_UPSTREAM_SELF $.routes[0].upstreams[0]']);
  // A labelled route with no stage that knows the client's lines: no client could ever take it.
  const noView = issues(lined([{ zone: 'a.test', upstreams: UP, labels: ['office'] }], ['decode', 'forward'])).filter((i) => i.severity === 'error');
  assert.deepEqual(noView.map((i) => i.code), ['LDNS_REQUIREMENT']);
  assert.match(noView[0]!.message, /"forward" needs "view".*route for "a\.test" serves "office" only/);
  // Without forward the routes do nothing.
  assert.deepEqual(codes({ config: { upstreams: UP, routes: [{ zone: 'a.test', upstreams: UP }], pipeline: ['decode'] } }).filter((c) => c.includes('routes')), ['LDNS_UNUSED_KEY $.routes']);
});
