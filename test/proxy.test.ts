// End-to-end tests of the proxy on real loopback sockets: c-ares and raw clients against linedns,
// linedns against an in-process upstream. Local records, smart-line, cache, forwarding, transports.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { answerData, buildQuery, decode, query, resolverFor, tcpExchange, udpExchange } from './helpers/client.js';
import { startLineDns, type Running } from './helpers/server.js';
import { simpleHandler, soa, TestUpstream } from './helpers/upstream.js';

const records = [
  { name: 'local.test', type: 'A', ttl: 120, rdata: '192.0.2.1' },
  { name: 'local.test', type: 'AAAA', ttl: 120, rdata: '2001:db8::1' },
  { name: 'local.test', type: 'MX', rdata: { preference: 10, exchange: 'mail.local.test' } },
  { name: 'local.test', type: 'TXT', rdata: ['hello', 'world'] },
  { name: 'local.test', type: 'NS', rdata: 'ns1.local.test' },
  { name: 'local.test', type: 'CAA', rdata: { flags: 0, tag: 'issue', value: 'ca.test' } },
  { name: '_http._tcp.local.test', type: 'SRV', rdata: { priority: 1, weight: 5, port: 8080, target: 'web.local.test' } },
  { name: 'mail.local.test', type: 'A', rdata: '192.0.2.25' },
  { name: 'www.local.test', type: 'CNAME', rdata: 'local.test' },
  { name: '*.apps.local.test', type: 'A', rdata: '192.0.2.80' },
  { name: 'blocked.test', action: 'deny' },
  { name: 'void.test', action: 'nxdomain' },
  { name: 'split.test', type: 'A', rdata: '10.0.0.2', labels: ['line2'] },
  { name: 'split.test', type: 'A', rdata: '10.0.0.3', labels: ['line3'] },
  { name: 'big.test', type: 'TXT', rdata: Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(200, 'x')) },
];
const smartLine = { line2: ['127.0.0.2/32'], line3: ['127.0.0.3/32'] };

describe('linedns end to end', () => {
  let up: TestUpstream;
  let ld: Running;

  before(async () => {
    up = await TestUpstream.start(simpleHandler('203.0.113.7', 300));
    ld = await startLineDns({
      config: { upstreams: [up.address], smartLineUnmatched: 'unlabelled', allow: ['127.0.0.0/8'] },
      records,
      smartLine,
    });
  });
  after(async () => {
    await ld.close();
    await up.close();
  });

  test('c-ares resolves every local record type', async () => {
    const r = resolverFor(ld.port);
    assert.deepEqual(await r.resolve4('local.test'), ['192.0.2.1']);
    assert.deepEqual(await r.resolve6('local.test'), ['2001:db8::1']);
    assert.deepEqual(await r.resolveMx('local.test'), [{ priority: 10, exchange: 'mail.local.test' }]);
    assert.deepEqual(await r.resolveTxt('local.test'), [['hello', 'world']]);
    assert.deepEqual(await r.resolveNs('local.test'), ['ns1.local.test']);
    assert.deepEqual(await r.resolveCaa('local.test'), [{ critical: 0, issue: 'ca.test' }]);
    assert.deepEqual(await r.resolveSrv('_http._tcp.local.test'), [{ priority: 1, weight: 5, port: 8080, name: 'web.local.test' }]);
    assert.deepEqual(await r.resolveCname('www.local.test'), ['local.test']);
    assert.deepEqual(await r.reverse('192.0.2.25'), ['mail.local.test']);
    assert.deepEqual(await r.resolve4('anything.apps.local.test'), ['192.0.2.80']);
    assert.equal(up.requests.length, 0, 'local answers never reach the upstream');
  });

  test('a CNAME is followed inside local data; the answer keeps the client spelling and AA', async () => {
    const res = await query(ld.port, { name: 'WWW.Local.TEST', type: 'A' });
    assert.equal(res.questions![0]!.name, 'WWW.Local.TEST');
    assert.deepEqual(res.answers!.map((a) => a.type), ['CNAME', 'A']);
    assert.equal(res.flag_aa, true);
    assert.equal(res.flag_ra, true);
  });

  test('deny is REFUSED and nxdomain is NXDOMAIN', async () => {
    assert.equal((await query(ld.port, { name: 'blocked.test' })).rcode, 'REFUSED');
    assert.equal((await query(ld.port, { name: 'void.test' })).rcode, 'NXDOMAIN');
  });

  test('split horizon: each line sees its own record, everyone else gets the upstream answer', async () => {
    const a2 = await query(ld.port, { name: 'split.test' }, { from: '127.0.0.2' });
    const a3 = await query(ld.port, { name: 'split.test' }, { from: '127.0.0.3' });
    const other = await query(ld.port, { name: 'split.test' }, { from: '127.0.0.4' });
    assert.deepEqual(answerData(a2), ['10.0.0.2']);
    assert.deepEqual(answerData(a3), ['10.0.0.3']);
    assert.deepEqual(answerData(other), ['203.0.113.7']);
    // The upstream answer is now cached: the line clients must still get their local answer.
    const again = await query(ld.port, { name: 'split.test' }, { from: '127.0.0.2' });
    assert.deepEqual(answerData(again), ['10.0.0.2']);
  });

  test('forwarded answers are cached and their TTLs count down', async () => {
    const before = up.requests.length;
    const first = await query(ld.port, { name: 'cached.example' });
    assert.equal((first.answers![0] as { ttl: number }).ttl, 300);
    await new Promise((r) => setTimeout(r, 1100));
    const second = await query(ld.port, { name: 'Cached.Example' });
    assert.equal(up.requests.length, before + 1, 'second query served from cache');
    assert.ok((second.answers![0] as { ttl: number }).ttl < 300, 'TTL aged');
    assert.equal(second.questions![0]!.name, 'Cached.Example');
  });

  test('A and AAAA asked at once for a new name are both cached (neither store drops the other)', async () => {
    const name = 'pair.example';
    const asked = (): number => up.requests.filter((r) => r.packet.questions![0]!.name === name).length;
    await Promise.all([query(ld.port, { name, type: 'A' }), query(ld.port, { name, type: 'AAAA' })]);
    assert.equal(asked(), 2);
    await Promise.all([query(ld.port, { name, type: 'A' }), query(ld.port, { name, type: 'AAAA' })]);
    assert.equal(asked(), 2, 'both answers came from the cache');
  });

  test('NXDOMAIN and NODATA are cached (RFC 2308) with the SOA TTL', async () => {
    const before = up.requests.length;
    const nx = await query(ld.port, { name: 'nx.example' });
    assert.equal(nx.rcode, 'NXDOMAIN');
    await query(ld.port, { name: 'nx.example' });
    const nodata = await query(ld.port, { name: 'nodata.example', type: 'MX' });
    assert.equal(nodata.answers!.length, 0);
    await query(ld.port, { name: 'nodata.example', type: 'MX' });
    assert.equal(up.requests.length, before + 2);
    assert.ok(ld.server.metrics.get('cache_hits_total') >= 2);
  });

  test('a large local answer is truncated over UDP (TC) and complete over TCP; c-ares retries', async () => {
    const udp = decode((await udpExchange(ld.port, buildQuery({ name: 'big.test', type: 'TXT' })))!);
    assert.equal(udp.flag_tc, true);
    assert.equal(udp.answers!.length, 0);
    const edns = decode((await udpExchange(ld.port, buildQuery({ name: 'big.test', type: 'TXT' }, { edns: { udpSize: 4096 } })))!);
    assert.equal(edns.flag_tc, true, 'over our 1232-octet UDP limit even with a larger EDNS size');
    const [tcp] = await tcpExchange(ld.port, [buildQuery({ name: 'big.test', type: 'TXT' })]);
    assert.equal(decode(tcp!).answers!.length, 1);
    const txt = await resolverFor(ld.port).resolveTxt('big.test');
    assert.equal(txt[0]!.length, 12);
  });

  test('TCP: pipelined queries on one connection all get their own answers', async () => {
    const names = ['local.test', 'mail.local.test', 'p1.example', 'p2.example', 'x.apps.local.test', 'void.test'];
    const msgs = names.map((n, i) => buildQuery({ name: n }, { id: 100 + i }));
    const replies = (await tcpExchange(ld.port, msgs)).map(decode);
    assert.equal(replies.length, names.length);
    for (const r of replies) assert.equal(r.questions![0]!.name, names[r.id! - 100]);
  });

  test('malformed packets get FORMERR or are dropped, and the server keeps answering', async () => {
    const junk = [Buffer.alloc(3), Buffer.from('not a dns packet at all, really'), buildQuery({ name: 'x.test' }).subarray(0, 20)];
    const loop = Buffer.concat([buildQuery({ name: 'x' }).subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    junk.push(loop);
    for (let i = 0; i < 200; i++) junk.push(Buffer.from(Array.from({ length: 12 + (i % 40) }, () => Math.floor(Math.random() * 256))));
    await Promise.all(junk.map((j) => udpExchange(ld.port, j, { timeoutMs: 300 })));
    const formerr = decode((await udpExchange(ld.port, loop))!);
    assert.equal(formerr.rcode, 'FORMERR');
    assert.ok(ld.server.metrics.get('decode_dropped_total') >= 1);
    assert.deepEqual(await resolverFor(ld.port).resolve4('local.test'), ['192.0.2.1']);
  });
});

describe('forwarding', () => {
  test('upstream TC: linedns retries over TCP and the client gets the full answer', async () => {
    const big = Array.from({ length: 30 }, (_, i) => ({ name: 'tc.example', type: 'A' as const, ttl: 60, data: `198.51.100.${i + 1}` }));
    const up = await TestUpstream.start(({ protocol }) => (protocol === 'udp' ? { flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.RECURSION_AVAILABLE } : { answers: big }));
    const ld = await startLineDns({ config: { upstreams: [up.address] } });
    try {
      const res = await query(ld.port, { name: 'tc.example' }, { edns: {} });
      assert.equal(res.answers!.length, 30);
      assert.deepEqual(up.requests.map((r) => r.protocol), ['udp', 'tcp']);
    } finally {
      await ld.close();
      await up.close();
    }
  });

  test('IPv6 both ways: a client on ::1 is answered from an upstream on ::1, then from the cache', async () => {
    const up = await TestUpstream.start(simpleHandler('203.0.113.60'), '::1');
    const ld = await startLineDns({ config: { listen: ['[::1]:0'], allow: ['::1/128'], upstreams: [up.address] } });
    try {
      for (let i = 0; i < 2; i++) {
        const reply = await udpExchange(ld.port, buildQuery({ name: 'six.test' }), { to: '::1' });
        assert.ok(reply, `reply ${i + 1} over IPv6`);
        assert.deepEqual(answerData(decode(reply)), ['203.0.113.60']);
      }
      assert.equal(up.requests.length, 1, 'the second answer came from the cache');
      assert.equal(up.requests[0]!.rinfo.address, '::1');
    } finally {
      await ld.close();
      await up.close();
    }
  });

  test('timeout on the first upstream fails over to the second; all silent: SERVFAIL within the deadline', async () => {
    const silent = await TestUpstream.start(() => null);
    const good = await TestUpstream.start(simpleHandler('203.0.113.9'));
    const ld = await startLineDns({ config: { upstreams: [silent.address, good.address], forward: { timeout: 300, deadline: 1500 } } });
    const dead = await startLineDns({ config: { upstreams: [silent.address, silent.address], forward: { timeout: 300, deadline: 1500 } } });
    try {
      const res = await query(ld.port, { name: 'failover.example' });
      assert.deepEqual(answerData(res), ['203.0.113.9']);
      const start = performance.now();
      const sf = await query(dead.port, { name: 'failover.example' });
      assert.equal(sf.rcode, 'SERVFAIL');
      assert.ok(performance.now() - start < 1500, 'well within the deadline');
    } finally {
      await ld.close();
      await dead.close();
      await silent.close();
      await good.close();
    }
  });

  test('upstream queries carry a fresh ID, our EDNS size, the client DO bit, and RD echoed', async () => {
    const up = await TestUpstream.start(simpleHandler());
    const ld = await startLineDns({ config: { upstreams: [up.address] } });
    try {
      const res = await query(ld.port, { name: 'edns.example' }, { id: 1234, edns: { udpSize: 4000, dnssecOk: true } });
      assert.equal(res.id, 1234);
      assert.equal(res.flag_rd, true);
      assert.equal(res.flag_ra, true);
      const sent = up.requests[0]!.packet;
      const opt = sent.additionals!.find((a) => a.type === 'OPT') as unknown as { udpPayloadSize: number; flag_do: boolean };
      assert.equal(opt.udpPayloadSize, 1232);
      assert.equal(opt.flag_do, true);
      const noRd = await query(ld.port, { name: 'nord.example' }, { flags: 0 });
      assert.equal(noRd.flag_rd, false);
    } finally {
      await ld.close();
      await up.close();
    }
  });
});

describe('negative caching TTL', () => {
  test('is min(SOA TTL, MINIMUM) capped by negativeTtl', async () => {
    const up = await TestUpstream.start(({ packet }) => ({
      flags: dnsPacket.RECURSION_AVAILABLE | 3,
      authorities: [soa(packet.questions![0]!.name.split('.').slice(1).join('.'), 3600, 1200)],
    }));
    const ld = await startLineDns({ config: { upstreams: [up.address], cache: { negativeTtl: 30 } } });
    try {
      const r = await query(ld.port, { name: 'neg.example' });
      assert.equal(r.rcode, 'NXDOMAIN');
      assert.equal((r.authorities![0] as { ttl: number }).ttl, 30);
    } finally {
      await ld.close();
      await up.close();
    }
  });
});

describe('smart-line sources and reloads', () => {
  test('the ECS address classifies the client only when the sender is in trustEcsFrom', async () => {
    const up = await TestUpstream.start(simpleHandler('203.0.113.20'));
    const files = {
      records: [{ name: 'ecs.test', type: 'A', rdata: '10.20.0.1', labels: ['branch'] }],
      smartLine: { branch: ['10.20.0.0/16'] },
    };
    const trusted = await startLineDns({ ...files, config: { upstreams: [up.address], trustEcsFrom: ['127.0.0.1/32'], smartLineUnmatched: 'unlabelled' } });
    const untrusted = await startLineDns({ ...files, config: { upstreams: [up.address], smartLineUnmatched: 'unlabelled' } });
    const ecs = { edns: { options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '10.20.5.0' } as dnsPacket.PacketOpt] } };
    try {
      assert.deepEqual(answerData(await query(trusted.port, { name: 'ecs.test' }, ecs)), ['10.20.0.1']);
      assert.deepEqual(answerData(await query(trusted.port, { name: 'ecs.test' }, { ...ecs, from: '127.0.0.9' })), ['203.0.113.20'], 'ECS from an untrusted sender is ignored');
      assert.deepEqual(answerData(await query(untrusted.port, { name: 'ecs.test' }, ecs)), ['203.0.113.20']);
      assert.ok(up.requests.every((r) => !(r.packet.additionals ?? []).some((a) => JSON.stringify(a).includes('"code":8'))), 'ECS never forwarded');
    } finally {
      await trusted.close();
      await untrusted.close();
      await up.close();
    }
  });

  test('a reload that adds a local record for a cached name answers locally at once', async () => {
    const up = await TestUpstream.start(simpleHandler('203.0.113.30'));
    const ld = await startLineDns({ config: { upstreams: [up.address] }, records: [] });
    try {
      assert.deepEqual(answerData(await query(ld.port, { name: 'moved.test' })), ['203.0.113.30']);
      writeFileSync(join(ld.dir, 'records.json'), JSON.stringify([{ name: 'moved.test', type: 'A', rdata: '192.0.2.30' }]));
      assert.equal(await ld.server.reloadFromFile(), true);
      assert.deepEqual(answerData(await query(ld.port, { name: 'moved.test' })), ['192.0.2.30']);
      writeFileSync(join(ld.dir, 'records.json'), '[{"name": "moved.test"}]');
      assert.equal(await ld.server.reloadFromFile(), false, 'invalid: refused');
      assert.deepEqual(answerData(await query(ld.port, { name: 'moved.test' })), ['192.0.2.30'], 'last good config kept');
    } finally {
      await ld.close();
      await up.close();
    }
  });

  test('an upstream with "protocol": "tcp" is asked over TCP only', async () => {
    const up = await TestUpstream.start(simpleHandler('203.0.113.40'));
    const ld = await startLineDns({ config: { upstreams: [{ address: '127.0.0.1', port: up.port, protocol: 'tcp' }] } });
    try {
      assert.deepEqual(answerData(await query(ld.port, { name: 'viatcp.test' })), ['203.0.113.40']);
      assert.deepEqual(up.requests.map((r) => r.protocol), ['tcp']);
    } finally {
      await ld.close();
      await up.close();
    }
  });
});
