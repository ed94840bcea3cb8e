// EDNS Client Subnet (RFC 7871) both ways, over real sockets on loopback: what forward sends
// (forward.clientSubnet), how the cache keeps answers per scope, and the scope replies carry.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { udpExchange } from './helpers/client.js';
import { ecsOption, mustParse, rawQuery } from './helpers/packets.js';
import { findBinary, runTool } from './helpers/peers.js';
import { startWithUpstream } from './helpers/server.js';
import { encodeReply, type Packet, type UpstreamHandler } from './helpers/upstream.js';
import { eventually, secondStarts } from './helpers/seconds.js';

interface Ecs {
  family: number;
  source: number;
  scope: number;
  ip: string;
}

interface EcsOptionFields {
  code: number;
  family?: number;
  sourcePrefixLength?: number;
  scopePrefixLength?: number;
  ip?: string;
}

/** The ECS option of a decoded message's OPT, null when it has none; undefined when it has no OPT. */
function ecsOf(p: Packet): Ecs | null | undefined {
  const opt = (p.additionals ?? []).find((a) => a.type === 'OPT') as { options?: EcsOptionFields[] } | undefined;
  if (opt === undefined) return undefined;
  const o = (opt.options ?? []).find((x) => x.code === 8);
  if (o === undefined) return null;
  return { family: o.family!, source: o.sourcePrefixLength!, scope: o.scopePrefixLength!, ip: o.ip! };
}

/**
 * A scripted upstream that reads the ECS it got and answers A with an address naming the subnet
 * (198.51.100.<third octet>, .0 without ECS), echoing the ECS with `scope(name)` as its scope.
 */
function subnetAnswerer(scope: (name: string, sent: Ecs) => number | 'mismatch' | 'none'): UpstreamHandler {
  return ({ packet }) => {
    const q = packet.questions![0]!;
    const sent = ecsOf(packet);
    const third = sent ? Number(sent.ip.split('.')[2] ?? 0) || 0 : 0;
    const answers = [{ name: q.name, type: 'A' as const, ttl: 300, data: `198.51.100.${third}` }];
    if (!sent) return { answers };
    const s = scope(q.name, sent);
    if (s === 'none') return { answers };
    const ip = s === 'mismatch' ? (sent.family === 1 ? '192.0.2.0' : '2001:db8:ffff::') : sent.ip;
    const option = { code: 'CLIENT_SUBNET', family: sent.family, sourcePrefixLength: sent.source, scopePrefixLength: s === 'mismatch' ? 0 : s, ip };
    return { answers, additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [option] } as unknown as dnsPacket.Answer] };
  };
}

/** An A query for `name` with an OPT and, when given, an ECS option (family 1, address octets). */
function queryWith(name: string, ecs?: { family?: number; source: number; address: number[] }): Buffer {
  const options = ecs ? [ecsOption(ecs.family ?? 1, ecs.source, 0, ecs.address)] : [];
  return rawQuery(name, 1, { id: 4242, opt: { options } });
}

type Reply = Packet & { rcode?: string };

async function ask(port: number, msg: Buffer, from = '127.0.0.1'): Promise<Reply> {
  const reply = await udpExchange(port, msg, { from, timeoutMs: 3000 });
  assert.ok(reply !== null, `no reply from ${from}`);
  mustParse(reply);
  return dnsPacket.decode(reply) as Reply;
}

/** The A addresses of the answer, sorted. */
function answerOf(p: Packet): string[] {
  return (p.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data).sort();
}

const ON = { ipv4: 24, ipv6: 56 };

test('clientSubnet off (the default): nothing sent upstream, even when the client sent ECS; its reply echoes it with scope 0', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 24), { config: {} });
  const p = await ask(ld.port, queryWith('off.example', { source: 24, address: [10, 1, 2] }));
  assert.equal(up.requests.length, 1);
  assert.equal(ecsOf(up.requests[0]!.packet), null, 'no ECS option upstream');
  assert.deepEqual(answerOf(p), ['198.51.100.0']);
  assert.deepEqual(ecsOf(p), { family: 1, source: 24, scope: 0, ip: '10.1.2.0' });
});

test('no ECS in, no ECS out: a client without the option gets none back, clientSubnet on or not', async (t) => {
  const { ld } = await startWithUpstream(t, subnetAnswerer(() => 24), { config: { forward: { clientSubnet: ON } } });
  const p = await ask(ld.port, queryWith('plain.example'));
  assert.equal(ecsOf(p), null, 'an OPT without an ECS option');
  assert.deepEqual(answerOf(p), ['198.51.100.0'], 'the upstream got 127.0.0.0/24: third octet 0');
});

test('per-scope caching: two /24s asked with scope 24 make two upstream queries; the same /24 again is a hit; scope 0 is shared', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer((name) => (name.startsWith('shared.') ? 0 : 24)), { config: { forward: { clientSubnet: ON } } });
  // Loopback is 127/8: sources in two /24s.
  const a = await ask(ld.port, queryWith('cdn.example'), '127.0.1.5');
  const b = await ask(ld.port, queryWith('cdn.example'), '127.0.2.5');
  assert.equal(up.requests.length, 2, 'one upstream query per /24');
  assert.deepEqual(up.requests.map((r) => ecsOf(r.packet)), [
    { family: 1, source: 24, scope: 0, ip: '127.0.1.0' },
    { family: 1, source: 24, scope: 0, ip: '127.0.2.0' },
  ]);
  assert.deepEqual(answerOf(a), ['198.51.100.1']);
  assert.deepEqual(answerOf(b), ['198.51.100.2']);
  const again = await ask(ld.port, queryWith('cdn.example'), '127.0.1.77');
  assert.equal(up.requests.length, 2, 'same /24: from the cache');
  assert.deepEqual(answerOf(again), ['198.51.100.1'], "the first /24's answer, not the second's");
  const other = await ask(ld.port, queryWith('cdn.example'), '127.0.2.99');
  assert.deepEqual(answerOf(other), ['198.51.100.2']);

  await ask(ld.port, queryWith('shared.example'), '127.0.1.5');
  const shared = await ask(ld.port, queryWith('shared.example'), '127.0.2.5');
  assert.equal(up.requests.length, 3, 'scope 0: one upstream query for everyone');
  assert.deepEqual(answerOf(shared), ['198.51.100.1']);
});

test('a scope longer than the source prefix is cached for the source prefix (RFC 7871 7.3.1)', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 32), { config: { forward: { clientSubnet: ON } } });
  await ask(ld.port, queryWith('long.example'), '127.0.3.1');
  const hit = await ask(ld.port, queryWith('long.example'), '127.0.3.200');
  assert.equal(up.requests.length, 1, 'the /24 we sent is what the answer is kept for');
  assert.deepEqual(answerOf(hit), ['198.51.100.3']);
});

test('an upstream ECS that does not echo what was sent makes the reply unusable (RFC 7871 7.3); none at all means scope 0', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer((name) => (name.startsWith('bad.') ? 'mismatch' : 'none')), { config: { forward: { clientSubnet: ON } } });
  const bad = await ask(ld.port, queryWith('bad.example'));
  assert.equal(bad.rcode, 'SERVFAIL');
  await ask(ld.port, queryWith('none.example'), '127.0.4.1');
  const shared = await ask(ld.port, queryWith('none.example'), '127.0.5.1');
  assert.deepEqual(answerOf(shared), ['198.51.100.4'], 'kept for everyone');
  assert.equal(up.requests.filter((r) => r.packet.questions![0]!.name === 'none.example').length, 1);
});

test('trusted client ECS: sent upstream cut to the configured prefix, cached per its scope, and the scope told back', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 24), {
    config: { forward: { clientSubnet: ON }, trustEcsFrom: ['127.0.0.1/32'] },
  });
  const p = await ask(ld.port, queryWith('trusted.example', { source: 32, address: [10, 1, 7, 9] }));
  assert.deepEqual(ecsOf(up.requests[0]!.packet), { family: 1, source: 24, scope: 0, ip: '10.1.7.0' }, "the client's ECS, cut to /24");
  assert.deepEqual(answerOf(p), ['198.51.100.7']);
  assert.deepEqual(ecsOf(p), { family: 1, source: 32, scope: 24, ip: '10.1.7.9' });
  // Another client of the same proxy in the same /24: a hit, with the entry's scope.
  const hit = await ask(ld.port, queryWith('trusted.example', { source: 24, address: [10, 1, 7] }));
  assert.equal(up.requests.length, 1);
  assert.deepEqual(ecsOf(hit), { family: 1, source: 24, scope: 24, ip: '10.1.7.0' });
  // One that revealed only /16 cannot use an answer kept for a /24: asked again, as a /16.
  await ask(ld.port, queryWith('trusted.example', { source: 16, address: [10, 1] }));
  assert.equal(up.requests.length, 2);
  assert.deepEqual(ecsOf(up.requests[1]!.packet), { family: 1, source: 16, scope: 0, ip: '10.1.0.0' });
  // Opting out (source 0, RFC 7871 7.1.2): /0 upstream.
  await ask(ld.port, queryWith('optout.example', { source: 0, address: [] }));
  assert.deepEqual(ecsOf(up.requests[2]!.packet), { family: 1, source: 0, scope: 0, ip: '0.0.0.0' });
  // IPv6 ECS cut to /56.
  await ask(ld.port, queryWith('v6.example', { family: 2, source: 64, address: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0x23, 0x45] }));
  assert.deepEqual(ecsOf(up.requests[3]!.packet), { family: 2, source: 56, scope: 0, ip: '2001:db8:1:2300::' });
});

test('untrusted client ECS: the socket address goes upstream, and the reply says scope 0 (no ECS it sends changes our answer)', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 24), { config: { forward: { clientSubnet: ON } } });
  const p = await ask(ld.port, queryWith('untrusted.example', { source: 24, address: [10, 1, 7] }), '127.0.9.1');
  assert.deepEqual(ecsOf(up.requests[0]!.packet), { family: 1, source: 24, scope: 0, ip: '127.0.9.0' });
  assert.deepEqual(answerOf(p), ['198.51.100.9']);
  assert.deepEqual(ecsOf(p), { family: 1, source: 24, scope: 0, ip: '10.1.7.0' });
});

const LINES = { office: ['10.1.0.0/16'], lab: ['10.9.9.0/24'] };
const RECORDS = [
  { name: 'intranet.example', type: 'A', rdata: '192.0.2.1', labels: ['office'] },
  { name: 'intranet.example', type: 'A', rdata: '192.0.2.9', labels: ['lab'] },
  { name: 'intranet.example', type: 'A', rdata: '192.0.2.100' },
  { name: 'plain.local.example', type: 'A', rdata: '192.0.2.50' },
];

test('local answers chosen by the line: the reply scope is the bits that chose it (the classifying CIDR); 0 when the answer did not depend on the client', async (t) => {
  const { ld } = await startWithUpstream(t, subnetAnswerer(() => 0), {
    config: { trustEcsFrom: ['127.0.0.1/32'], smartLineUnmatched: 'unlabelled' },
    smartLine: LINES,
    records: RECORDS,
  });
  const office = await ask(ld.port, queryWith('intranet.example', { source: 32, address: [10, 1, 2, 3] }));
  assert.deepEqual(answerOf(office), ['192.0.2.1', '192.0.2.100']);
  assert.deepEqual(ecsOf(office), { family: 1, source: 32, scope: 16, ip: '10.1.2.3' });
  const lab = await ask(ld.port, queryWith('intranet.example', { source: 24, address: [10, 9, 9] }));
  assert.deepEqual(answerOf(lab), ['192.0.2.100', '192.0.2.9']);
  assert.deepEqual(ecsOf(lab), { family: 1, source: 24, scope: 24, ip: '10.9.9.0' });
  // In no line: the first bit already leaves every line's CIDR.
  const none = await ask(ld.port, queryWith('intranet.example', { source: 24, address: [192, 0, 2] }));
  assert.deepEqual(answerOf(none), ['192.0.2.100']);
  assert.deepEqual(ecsOf(none), { family: 1, source: 24, scope: 1, ip: '192.0.2.0' });
  // A second office client: the per-view cache entry answers, with the same scope.
  const again = await ask(ld.port, queryWith('intranet.example', { source: 24, address: [10, 1, 200] }));
  assert.deepEqual(answerOf(again), ['192.0.2.1', '192.0.2.100']);
  assert.deepEqual(ecsOf(again), { family: 1, source: 24, scope: 16, ip: '10.1.200.0' });
  // Local data without labels does not depend on the client.
  const plain = await ask(ld.port, queryWith('plain.local.example', { source: 24, address: [10, 1, 2] }));
  assert.deepEqual(ecsOf(plain), { family: 1, source: 24, scope: 0, ip: '10.1.2.0' });
});

test('local answers for an untrusted sender depend on its socket address only: scope 0', async (t) => {
  const { ld } = await startWithUpstream(t, subnetAnswerer(() => 0), {
    config: { smartLineUnmatched: 'unlabelled' },
    smartLine: { loop: ['127.0.0.0/8'] },
    records: [{ name: 'intranet.example', type: 'A', rdata: '192.0.2.1', labels: ['loop'] }],
  });
  const p = await ask(ld.port, queryWith('intranet.example', { source: 24, address: [10, 1, 2] }));
  assert.deepEqual(answerOf(p), ['192.0.2.1'], 'classified by 127.0.0.1');
  assert.deepEqual(ecsOf(p), { family: 1, source: 24, scope: 0, ip: '10.1.2.0' });
});

const DIG = findBinary('dig');

test('dig +subnet as the client sees the scope of a labelled answer', { skip: DIG === null ? 'dig not installed' : false }, async (t) => {
  const { ld } = await startWithUpstream(t, subnetAnswerer(() => 0), {
    config: { trustEcsFrom: ['127.0.0.1/32'], smartLineUnmatched: 'unlabelled' },
    smartLine: LINES,
    records: RECORDS,
  });
  const r = await runTool(DIG!, ['@127.0.0.1', '-p', String(ld.port), '+subnet=10.1.2.3/32', '+tries=1', '+time=3', 'intranet.example', 'A']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /CLIENT-SUBNET: 10\.1\.2\.3\/32\/16/);
  assert.match(r.stdout, /intranet\.example\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1/);
  const plain = await runTool(DIG!, ['@127.0.0.1', '-p', String(ld.port), '+tries=1', '+time=3', 'plain.local.example', 'A']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.doesNotMatch(plain.stdout, /CLIENT-SUBNET/);
});

test('error replies carry the ECS option too (scope 0)', async (t) => {
  const { ld } = await startWithUpstream(t, (req) => encodeReply(req.packet, { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3 }), {
    config: { allow: ['127.0.0.2/32'] },
  });
  const refused = await ask(ld.port, queryWith('refused.example', { source: 24, address: [10, 1, 2] }));
  assert.equal(refused.rcode, 'REFUSED');
  assert.deepEqual(ecsOf(refused), { family: 1, source: 24, scope: 0, ip: '10.1.2.0' });
});

test('nested lines: the scope covers what decides the view, not just the matching CIDR (a /8 around a /16)', async (t) => {
  const { ld } = await startWithUpstream(t, subnetAnswerer(() => 0), {
    config: { trustEcsFrom: ['127.0.0.1/32'] },
    smartLine: { wide: ['10.0.0.0/8'], narrow: ['10.1.0.0/16'] },
    records: [
      { name: 'nested.example', type: 'A', rdata: '192.0.2.8', labels: ['wide'] },
      { name: 'nested.example', type: 'A', rdata: '192.0.2.16', labels: ['narrow'] },
    ],
  });
  // 10.2.3.4 matches only the /8, but 10.1/16 inside it answers otherwise: 10.2.0.0/15 is the
  // largest block around it that the /16 does not touch.
  const wide = await ask(ld.port, queryWith('nested.example', { source: 32, address: [10, 2, 3, 4] }));
  assert.deepEqual(answerOf(wide), ['192.0.2.8']);
  assert.deepEqual(ecsOf(wide), { family: 1, source: 32, scope: 15, ip: '10.2.3.4' });
  const narrow = await ask(ld.port, queryWith('nested.example', { source: 32, address: [10, 1, 3, 4] }));
  assert.deepEqual(answerOf(narrow), ['192.0.2.16'], 'the most specific line wins');
  assert.deepEqual(ecsOf(narrow), { family: 1, source: 32, scope: 16, ip: '10.1.3.4' });
});

test('a scoped upstream answer stays scoped through a local CNAME chase and a rewrite', async (t) => {
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 24), {
    config: { forward: { clientSubnet: ON }, rewrite: [{ from: 'renamed.example', to: 'cdn.example' }] },
    records: [{ name: 'alias.example', type: 'CNAME', rdata: 'cdn.example' }],
  });
  for (const name of ['alias.example', 'renamed.example']) {
    const before = up.requests.length;
    const a = await ask(ld.port, queryWith(name), '127.0.6.1');
    const b = await ask(ld.port, queryWith(name), '127.0.7.1');
    assert.equal(up.requests.length, before + 2, `${name}: one upstream query per /24, not one shared answer`);
    assert.deepEqual(answerOf(a), ['198.51.100.6']);
    assert.deepEqual(answerOf(b), ['198.51.100.7']);
    const hit = await ask(ld.port, queryWith(name), '127.0.6.200');
    assert.equal(up.requests.length, before + 2, `${name}: same /24 again: from the cache`);
    assert.deepEqual(answerOf(hit), ['198.51.100.6']);
  }
});

test('hidden labelled records and labelled zones: the reply scope is the bits that chose the view, also for the upstream answer behind hidden data', async (t) => {
  const office = '$ORIGIN corp.example.\n@ 300 IN SOA ns hostmaster 2 7200 3600 1209600 60\n@ NS ns\nns A 10.0.0.53\nwww A 10.0.0.10\n';
  const { ld, up } = await startWithUpstream(t, subnetAnswerer(() => 0), {
    config: {
      trustEcsFrom: ['127.0.0.1/32'],
      pipeline: ['decode', 'cache', 'records', 'zones', 'smartline', 'forward'],
      zones: [{ file: 'office.zone', labels: ['office'] }],
    },
    smartLine: LINES,
    records: [{ name: 'secret.example', type: 'A', rdata: '192.0.2.7', labels: ['office'] }],
    extra: { 'office.zone': office },
  });
  // A lab client does not see the office-only record: the upstream answers, and that choice
  // depended on its address being outside the office /16, decided within 10.9.9.0/24.
  const hidden = await ask(ld.port, queryWith('secret.example', { source: 32, address: [10, 9, 9, 1] }));
  assert.deepEqual(answerOf(hidden), ['198.51.100.0']);
  assert.equal(up.requests.length, 1);
  assert.deepEqual(ecsOf(hidden), { family: 1, source: 32, scope: 24, ip: '10.9.9.1' });
  const shown = await ask(ld.port, queryWith('secret.example', { source: 32, address: [10, 1, 0, 1] }));
  assert.deepEqual(answerOf(shown), ['192.0.2.7']);
  assert.deepEqual(ecsOf(shown), { family: 1, source: 32, scope: 16, ip: '10.1.0.1' });
  // The labelled zone: an office client gets it, scope 16.
  const zone = await ask(ld.port, queryWith('www.corp.example', { source: 24, address: [10, 1, 5] }));
  assert.deepEqual(answerOf(zone), ['10.0.0.10']);
  assert.deepEqual(ecsOf(zone), { family: 1, source: 24, scope: 16, ip: '10.1.5.0' });
});

test('an upstream that refuses queries with a Client Subnet is asked again without one, and the answer is shared', async (t) => {
  const { ld, up } = await startWithUpstream(
    t,
    (req) => (ecsOf(req.packet) ? { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 5 } : subnetAnswerer(() => 0)(req)),
    { config: { forward: { clientSubnet: ON } } },
  );
  const a = await ask(ld.port, queryWith('picky.example'), '127.0.8.1');
  assert.deepEqual(answerOf(a), ['198.51.100.0']);
  assert.equal(up.requests.length, 2);
  assert.deepEqual(up.requests.map((r) => ecsOf(r.packet) === null), [false, true], 'with, then without');
  const b = await ask(ld.port, queryWith('picky.example'), '127.0.9.1');
  assert.deepEqual(answerOf(b), ['198.51.100.0']);
  assert.equal(up.requests.length, 2, 'shared: answered from the cache');
});

/**
 * An upstream for refresh tests: A 198.51.<100 + n>.<third octet of the ECS sent>, n counting its
 * queries from 0, with TTL `ttl(n)` and the ECS echoed with scope `scope(n)`.
 */
function generations(ttl: (n: number) => number, scope: (n: number) => number): UpstreamHandler {
  let n = 0;
  return ({ packet }) => {
    const q = packet.questions![0]!;
    const sent = ecsOf(packet);
    const third = sent ? Number(sent.ip.split('.')[2] ?? 0) || 0 : 0;
    const g = n++;
    const answers = [{ name: q.name, type: 'A' as const, ttl: ttl(g), data: `198.51.${100 + g}.${third}` }];
    if (!sent) return { answers };
    const option = { code: 'CLIENT_SUBNET', family: sent.family, sourcePrefixLength: sent.source, scopePrefixLength: scope(g), ip: sent.ip };
    return { answers, additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, options: [option] } as unknown as dnsPacket.Answer] };
  };
}

/** A trusting linedns (127.0.0.1 is a proxy whose clients' ECS we believe) with `cache` options. */
const trusting = (cache: Record<string, unknown>) => ({
  config: { answerMemo: false, trustEcsFrom: ['127.0.0.1/32'], forward: { clientSubnet: ON }, pipeline: ['decode', { cache }, 'smartline', 'forward'] },
});

const PROXIED = { source: 32, address: [10, 1, 7, 9] };

test("serve-stale refresh of a trusted client's scoped answer: the client's subnet goes upstream, the reply tells its scope, and the refresh replaces the entry", async (t) => {
  const { ld, up } = await startWithUpstream(t, generations((n) => (n === 0 ? 1 : 300), () => 24), trusting({ staleRefreshInterval: 0 }));
  const stored = await secondStarts();
  const first = await ask(ld.port, queryWith('stale.cdn.example', PROXIED));
  assert.deepEqual(answerOf(first), ['198.51.100.7']);
  await secondStarts(stored + 1); // expired (TTL 1): the next lookup refreshes it on a fork
  const refreshed = await ask(ld.port, queryWith('stale.cdn.example', PROXIED));
  assert.equal(up.requests.length, 2);
  assert.deepEqual(ecsOf(up.requests[1]!.packet), { family: 1, source: 24, scope: 0, ip: '10.1.7.0' }, "the refresh asks for the client's /24, not the proxy's");
  assert.deepEqual(answerOf(refreshed), ['198.51.101.7']);
  assert.deepEqual(ecsOf(refreshed), { family: 1, source: 32, scope: 24, ip: '10.1.7.9' }, "the refresh answer's scope");
  const hit = await ask(ld.port, queryWith('stale.cdn.example', PROXIED));
  assert.equal(up.requests.length, 2, 'stored under the client subnet it was asked for: a hit');
  assert.deepEqual(answerOf(hit), ['198.51.101.7']);
  assert.deepEqual(ecsOf(hit), { family: 1, source: 32, scope: 24, ip: '10.1.7.9' });
});

test('a stale shared answer refreshed with a scope: the client learns the scope from the refresh', async (t) => {
  // The first answer is for everyone (scope 0), its refresh only for the client's /24.
  const { ld, up } = await startWithUpstream(t, generations((n) => (n === 0 ? 1 : 300), (n) => (n === 0 ? 0 : 24)), trusting({ staleRefreshInterval: 0 }));
  const stored = await secondStarts();
  assert.deepEqual(ecsOf(await ask(ld.port, queryWith('scope.cdn.example', PROXIED))), { family: 1, source: 32, scope: 0, ip: '10.1.7.9' });
  await secondStarts(stored + 1);
  const refreshed = await ask(ld.port, queryWith('scope.cdn.example', PROXIED));
  assert.equal(up.requests.length, 2);
  assert.deepEqual(answerOf(refreshed), ['198.51.101.7']);
  assert.deepEqual(ecsOf(refreshed), { family: 1, source: 32, scope: 24, ip: '10.1.7.9' });
});

test('a stale answer that varied by view, refreshed: the reply scope is still the bits that chose the view', async (t) => {
  // clientSubnet off: the upstream gets no ECS and answers for everyone; the view made the
  // answer an upstream one (the office-only record is hidden from the lab).
  const { ld, up } = await startWithUpstream(t, generations((n) => (n === 0 ? 1 : 300), () => 0), {
    config: { answerMemo: false, trustEcsFrom: ['127.0.0.1/32'], pipeline: ['decode', { cache: { staleRefreshInterval: 0 } }, 'records', 'smartline', 'forward'] },
    smartLine: LINES,
    records: [{ name: 'secret.example', type: 'A', rdata: '192.0.2.7', labels: ['office'] }],
  });
  const lab = { source: 32, address: [10, 9, 9, 1] };
  const stored = await secondStarts();
  assert.deepEqual(ecsOf(await ask(ld.port, queryWith('secret.example', lab))), { family: 1, source: 32, scope: 24, ip: '10.9.9.1' });
  await secondStarts(stored + 1);
  const refreshed = await ask(ld.port, queryWith('secret.example', lab));
  assert.equal(up.requests.length, 2);
  assert.deepEqual(answerOf(refreshed), ['198.51.101.0']);
  assert.deepEqual(ecsOf(refreshed), { family: 1, source: 32, scope: 24, ip: '10.9.9.1' }, 'the view-deciding bits, from the refresh');
});

test("prefetch of a trusted client's scoped answer asks for that client's subnet, and the refreshed entry serves the next hits", async (t) => {
  // TTL 2 and 90 %: due from the entry's second second on; one hit is enough. The refreshed
  // answer lives 300 s, so hits on it start no prefetch of their own.
  const { ld, up } = await startWithUpstream(t, generations((n) => (n === 0 ? 2 : 300), () => 24), trusting({ prefetch: 1, prefetchPercent: 90 }));
  const stored = await secondStarts();
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('hot.cdn.example', PROXIED))), ['198.51.100.7']);
  await secondStarts(stored + 1);
  // Another client of the proxy in the same /24 hits the entry and starts the prefetch.
  const hit = await ask(ld.port, queryWith('hot.cdn.example', { source: 32, address: [10, 1, 7, 200] }));
  assert.deepEqual(answerOf(hit), ['198.51.100.7']);
  assert.deepEqual(ecsOf(hit), { family: 1, source: 32, scope: 24, ip: '10.1.7.200' });
  await eventually(() => ld.server.metrics.get('cache_stores_total') === 2, 'the prefetched answer stored');
  assert.equal(up.requests.length, 2);
  assert.deepEqual(ecsOf(up.requests[1]!.packet), { family: 1, source: 24, scope: 0, ip: '10.1.7.0' }, "the entry's /24 asked for, not the proxy's");
  const after = await ask(ld.port, queryWith('hot.cdn.example', PROXIED));
  assert.deepEqual(answerOf(after), ['198.51.101.7'], 'the refreshed answer replaced the entry');
  assert.equal(up.requests.length, 2, 'a hit on the refreshed entry: no further prefetch');
  // A client of another /24 never matched the entry: its own miss, for its own subnet.
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('hot.cdn.example', { source: 32, address: [10, 1, 8, 1] }))), ['198.51.102.8']);
  assert.equal(ld.server.metrics.get('cache_prefetches_total'), 1);
});

test('longest-prefix match (RFC 7871 7.3.2): a shared answer stored later, fresh or expired, does not shadow the /24 entries', async (t) => {
  // /24 answers live 300 s; the opt-out's (scope 0, shared) 1 s.
  const { ld, up } = await startWithUpstream(t, generations(() => 300, () => 24), {
    config: { answerMemo: false, trustEcsFrom: ['127.0.0.1/32'], forward: { clientSubnet: ON } },
  });
  // An upstream answering an opt-out (/0) with scope 0 and TTL 1.
  const optOut = generations(() => 1, () => 0);
  const scoped = generations(() => 300, () => 24);
  up.handler = (req) => (ecsOf(req.packet)?.source === 0 ? optOut(req) : scoped(req));
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example', PROXIED))), ['198.51.100.7']);
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example'), '127.0.3.5')), ['198.51.101.3']);
  const stored = await secondStarts();
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example', { source: 0, address: [] }), '127.0.0.9')), ['198.51.100.0']);
  assert.equal(up.requests.length, 3);
  const proxied = await ask(ld.port, queryWith('lpm.cdn.example', PROXIED));
  assert.deepEqual(answerOf(proxied), ['198.51.100.7'], "the client's /24 entry, not the shared one");
  assert.deepEqual(ecsOf(proxied), { family: 1, source: 32, scope: 24, ip: '10.1.7.9' });
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example'), '127.0.3.5')), ['198.51.101.3']);
  // A client no /24 entry matches gets the shared answer.
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example'), '127.0.4.5')), ['198.51.100.0']);
  assert.equal(up.requests.length, 3, 'all from the cache');
  await secondStarts(stored + 1); // the shared one expired: it must not hide the fresh /24 ones
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example', PROXIED))), ['198.51.100.7']);
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('lpm.cdn.example'), '127.0.3.5')), ['198.51.101.3']);
  assert.equal(up.requests.length, 3, 'no refresh of the expired shared entry');
  assert.equal(ld.server.metrics.get('cache_stale_served_total'), 0);
});

test('an expired longer-scoped entry does not hide a fresh shared one: the fresh answer, no refresh', async (t) => {
  const { ld, up } = await startWithUpstream(t, generations(() => 1, () => 24), {
    config: { answerMemo: false, trustEcsFrom: ['127.0.0.1/32'], forward: { clientSubnet: ON } },
  });
  const shared = generations(() => 300, () => 0);
  const scoped = generations(() => 1, () => 24);
  up.handler = (req) => {
    const q = req.packet.questions![0]!;
    if (q.type === 'TXT') return { answers: [{ name: q.name, type: 'TXT', ttl: 300, data: 'other variant' }] };
    return ecsOf(req.packet)?.source === 0 ? shared(req) : scoped(req);
  };
  const stored = await secondStarts();
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('fresh.cdn.example', PROXIED))), ['198.51.100.7']);
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('fresh.cdn.example', { source: 0, address: [] }), '127.0.0.9')), ['198.51.100.0']);
  // Another variant of the name stored after them, whatever order that leaves the chain in.
  await ask(ld.port, rawQuery('fresh.cdn.example', 16, { id: 7, opt: { options: [] } }));
  await secondStarts(stored + 1);
  assert.deepEqual(answerOf(await ask(ld.port, queryWith('fresh.cdn.example', PROXIED))), ['198.51.100.0']);
  assert.equal(up.requests.length, 3, 'the fresh shared answer, no refresh of the expired /24');
  assert.equal(ld.server.metrics.get('cache_stale_served_total'), 0);
});

/** Records of types other than A, for the shared answers of sharedButA. */
const OTHER_RECORDS: Record<number, { type: string; data: unknown }> = {
  16: { type: 'TXT', data: 'shared' },
  15: { type: 'MX', data: { preference: 10, exchange: 'mx.example' } },
  2: { type: 'NS', data: 'ns.example' },
  12: { type: 'PTR', data: 'ptr.example' },
  13: { type: 'HINFO', data: { cpu: 'x', os: 'y' } },
  33: { type: 'SRV', data: { priority: 1, weight: 1, port: 53, target: 'srv.example' } },
  257: { type: 'CAA', data: { flags: 0, tag: 'issue', value: 'ca.example' } },
  28: { type: 'AAAA', data: '2001:db8::1' },
};

/** An upstream: shared answers (no ECS echoed) for the types of OTHER_RECORDS, A scoped /24 as subnetAnswerer. */
const sharedButA: UpstreamHandler = (req) => {
  const q = req.packet.questions![0]!;
  const other = Object.values(OTHER_RECORDS).find((r) => r.type === q.type);
  if (other !== undefined) return { answers: [{ name: q.name, ttl: 300, ...other } as unknown as dnsPacket.Answer] };
  return subnetAnswerer(() => 24)(req);
};

test('scoped answers are capped at 16 per name and variant (RFC 7871 11.3): the oldest make room', async (t) => {
  const { ld, up } = await startWithUpstream(t, sharedButA, { config: { answerMemo: false, forward: { clientSubnet: ON } } });
  const name = 'many.cdn.example';
  for (let third = 1; third <= 20; third++) await ask(ld.port, queryWith(name), `127.0.${third}.5`);
  assert.equal(up.requests.length, 20);
  await ask(ld.port, queryWith(name), '127.0.20.9');
  await ask(ld.port, queryWith(name), '127.0.5.9');
  assert.equal(up.requests.length, 20, 'the 16 newest /24s are kept');
  await ask(ld.port, queryWith(name), '127.0.4.9');
  assert.equal(up.requests.length, 21, 'the 4 oldest made room');
});

test('a full chain drops scoped answers first: spoofed sources cannot push out the shared answers of a name', async (t) => {
  const { ld, up } = await startWithUpstream(t, sharedButA, { config: { answerMemo: false, forward: { clientSubnet: ON } } });
  const name = 'full.cdn.example';
  // 31 shared variants: 8 types (not A) in 4 DO/CD combinations, less one.
  const shared: Buffer[] = [];
  for (const type of Object.keys(OTHER_RECORDS).map(Number)) {
    for (const [flags, dnssecOk] of [[0x0100, 0], [0x0100, 0x8000], [0x0110, 0], [0x0110, 0x8000]] as const) shared.push(rawQuery(name, type, { id: shared.length, flags, opt: { flags: dnssecOk, options: [] } }));
  }
  shared.pop();
  for (const q of shared) await ask(ld.port, q);
  assert.equal(up.requests.length, 31);
  // Scoped A answers from 6 /24s: the chain is full after the first.
  for (let third = 1; third <= 6; third++) await ask(ld.port, queryWith(name), `127.0.${third}.5`);
  assert.equal(up.requests.length, 37);
  for (const q of shared) await ask(ld.port, q);
  assert.equal(up.requests.length, 37, 'every shared answer still cached');
  await ask(ld.port, queryWith(name), '127.0.6.9');
  assert.equal(up.requests.length, 37, 'the newest scoped answer took the place of the older ones');
  await ask(ld.port, queryWith(name), '127.0.1.9');
  assert.equal(up.requests.length, 38, 'an older one made room');
});
