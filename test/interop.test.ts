// Interop with real DNS software: dig and kdig as linedns's clients, nsd and Unbound as its
// upstreams, and linedns's answers checked against what those servers answer directly.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { startLineDns, type Running } from './helpers/server.js';
import { TestUpstream, soa, type UpstreamHandler } from './helpers/upstream.js';
import {
  dig,
  findBinary,
  kdig,
  kdigOptionCodes,
  recordKey,
  recordSet,
  sleep,
  startNsd,
  startUnbound,
  type Daemon,
  type DigReply,
} from './helpers/peers.js';

const DIG = findBinary('dig');
const KDIG = findBinary('kdig');
const NSD = findBinary('nsd');
const UNBOUND = findBinary('unbound');

/** EDNS option code of Client Subnet (RFC 7871). */
const ECS = 8;

function optionCodesSentUpstream(up: TestUpstream, name: string): number[][] {
  return up.requests
    .filter((r) => r.packet.questions?.[0]?.name.toLowerCase() === name)
    .map((r) => (r.packet.additionals ?? []).flatMap((a) => (a.type === 'OPT' ? (a as dnsPacket.OptAnswer).options.map((o) => Number(o.code)) : [])));
}

/** TXT strings of `count` x `len` characters: big enough to overflow 512 or 1232 bytes. */
function txtStrings(count: number, len: number, tag: string): string[] {
  return Array.from({ length: count }, (_, i) => `${tag}${String(i).padStart(2, '0')}`.padEnd(len, 'x'));
}

// ---------------------------------------------------------------------------------------------
// 1. dig and kdig as clients, with a scripted upstream behind linedns

const BIG_CLIENT_TXT = txtStrings(12, 150, 'big');

/** A small authoritative-looking zone, client.test, answered by the in-process upstream. */
const clientZone: UpstreamHandler = ({ packet }) => {
  const q = packet.questions![0]!;
  const name = q.name.toLowerCase();
  const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE;
  if (name.startsWith('nx.')) return { flags: flags | 3, authorities: [soa('client.test', 60)] };
  if (name === 'big.client.test' && q.type === 'TXT') return { flags, answers: [{ name: q.name, type: 'TXT', ttl: 300, data: BIG_CLIENT_TXT }] };
  if (name.endsWith('.client.test') && q.type === 'A') {
    return {
      flags,
      answers: [
        { name: q.name, type: 'A', ttl: 300, data: '192.0.2.1' },
        { name: q.name, type: 'A', ttl: 300, data: '192.0.2.2' },
      ],
    };
  }
  if (name.endsWith('.client.test') && q.type === 'AAAA') return { flags, answers: [{ name: q.name, type: 'AAAA', ttl: 300, data: '2001:db8::1' }] };
  return { flags, authorities: [soa('client.test', 60)] };
};

function assertProxyFlags(r: DigReply, opts: { rd?: boolean } = {}): void {
  assert.ok(r.flags.has('qr'), 'QR set');
  assert.ok(r.flags.has('ra'), 'linedns offers recursion: RA set');
  assert.equal(r.flags.has('rd'), opts.rd ?? true, 'RD echoed as asked');
}

describe('dig and kdig as clients of linedns', { skip: DIG === null ? 'dig not installed' : false }, () => {
  let up: TestUpstream;
  let ld: Running;

  before(async () => {
    up = await TestUpstream.start(clientZone);
    ld = await startLineDns({
      config: { upstreams: [up.address] },
      records: [{ name: 'local.client.test', type: 'A', ttl: 60, rdata: '198.51.100.7' }],
    });
  });
  after(async () => {
    await ld?.close();
    await up?.close();
  });

  it('dig over UDP: the answer, NOERROR, qr rd ra, and an EDNS 0 OPT back', async () => {
    const { reply } = await dig(ld.port, ['www.client.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assert.equal(reply.transport, 'UDP');
    assertProxyFlags(reply);
    assert.ok(!reply.flags.has('tc'));
    assert.deepEqual(recordSet(reply.answer), ['www.client.test. IN A 192.0.2.1', 'www.client.test. IN A 192.0.2.2']);
    assert.ok(reply.edns, 'dig sent EDNS, so the reply carries an OPT');
    assert.equal(reply.edns.version, 0);
    assert.equal(reply.edns.mbz, 0);
    assert.ok(reply.answer.every((r) => r.ttl <= 300));
  });

  it('dig +tcp: the same answer over TCP', async () => {
    const before = ld.server.metrics.get('tcp_queries_total');
    const { reply } = await dig(ld.port, ['+tcp', 'www.client.test', 'AAAA']);
    assert.equal(reply.status, 'NOERROR');
    assert.equal(reply.transport, 'TCP');
    assertProxyFlags(reply);
    assert.deepEqual(recordSet(reply.answer), ['www.client.test. IN AAAA 2001:db8::1']);
    assert.equal(ld.server.metrics.get('tcp_queries_total'), before + 1, 'linedns saw the query on TCP');
  });

  it('dig +norec: RD comes back clear', async () => {
    const { reply } = await dig(ld.port, ['+norec', 'norec.client.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assertProxyFlags(reply, { rd: false });
    assert.equal(reply.answer.length, 2);
  });

  it("dig: the question comes back in the client's spelling", async () => {
    const { reply } = await dig(ld.port, ['WwW.CliEnt.TeSt', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assert.deepEqual(reply.question, [{ name: 'WwW.CliEnt.TeSt.', class: 'IN', type: 'A' }]);
    assert.equal(reply.answer.length, 2);
  });

  it('dig: NXDOMAIN with the SOA in authority', async () => {
    const { reply } = await dig(ld.port, ['nx.client.test', 'A']);
    assert.equal(reply.status, 'NXDOMAIN');
    assertProxyFlags(reply);
    assert.equal(reply.answer.length, 0);
    assert.deepEqual(reply.authority.map((r) => `${r.name} ${r.type}`), ['client.test. SOA']);
  });

  it('dig: local records.json data is answered', async () => {
    const { reply } = await dig(ld.port, ['local.client.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assertProxyFlags(reply);
    assert.deepEqual(recordSet(reply.answer), ['local.client.test. IN A 198.51.100.7']);
  });

  it('dig +bufsize=512 +ignore on a 1.9 KB answer: TC=1, no records, fits in 512', async () => {
    const { reply } = await dig(ld.port, ['+bufsize=512', '+ignore', 'big.client.test', 'TXT']);
    assert.equal(reply.status, 'NOERROR');
    assert.equal(reply.transport, 'UDP');
    assert.ok(reply.flags.has('tc'), 'TC set');
    assert.equal(reply.counts.answer, 0, 'no partial RRset');
    assert.ok(reply.size !== null && reply.size <= 512, `reply of ${reply.size} bytes fits 512`);
    assert.ok(reply.edns, 'a truncated reply to an EDNS query still carries an OPT');
  });

  it('dig +noedns +ignore on a 1.9 KB answer: TC=1 within 512 and no OPT', async () => {
    const { reply } = await dig(ld.port, ['+noedns', '+ignore', 'big.client.test', 'TXT']);
    assert.ok(reply.flags.has('tc'));
    assert.equal(reply.edns, null);
    assert.ok(reply.size !== null && reply.size <= 512);
  });

  it('dig +bufsize=4096 on a 1.9 KB answer: capped at 1232 so TC, and dig retries over TCP for all of it', async () => {
    const { reply, result } = await dig(ld.port, ['+bufsize=4096', 'big.client.test', 'TXT']);
    assert.match(result.stdout, /Truncated, retrying in TCP mode/);
    assert.equal(reply.transport, 'TCP');
    assert.ok(!reply.flags.has('tc'));
    assert.equal(reply.answer.length, 1);
    const strings = reply.answer[0]!.rdata.match(/"[^"]*"/g) ?? [];
    assert.deepEqual(strings, BIG_CLIENT_TXT.map((s) => `"${s}"`));
  });

  it('dig +bufsize=4096 on a small answer: no truncation', async () => {
    const { reply } = await dig(ld.port, ['+bufsize=4096', '+ignore', 'small.client.test', 'A']);
    assert.ok(!reply.flags.has('tc'));
    assert.equal(reply.answer.length, 2);
  });

  it('dig +subnet from an untrusted client: answered; ECS answered with scope 0 and not sent upstream', async () => {
    const { reply } = await dig(ld.port, ['+subnet=192.0.2.0/24', 'ecs-dig.client.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assert.equal(reply.answer.length, 2);
    assert.ok(reply.edns);
    assert.deepEqual(
      reply.edns.options.filter((o) => o.code === ECS).map((o) => o.text),
      ['192.0.2.0/24/0'],
      "the client's subnet back with scope 0 (RFC 7871 7.2.1): the answer did not depend on it",
    );
    const sent = optionCodesSentUpstream(up, 'ecs-dig.client.test');
    assert.ok(sent.length >= 1, 'the query went upstream');
    for (const codes of sent) assert.ok(!codes.includes(ECS), `upstream query carried options ${codes.join(',')}`);
  });

  describe('kdig', { skip: KDIG === null ? 'kdig not installed' : false }, () => {
    it('kdig over UDP without EDNS: the answer and no OPT', async () => {
      const { replies, result } = await kdig(ld.port, ['www.client.test', 'A']);
      assert.equal(replies.length, 1, result.stderr);
      const r = replies[0]!;
      assert.equal(r.RCODE, 0);
      assert.equal(r.QR, 1);
      assert.equal(r.RA, 1);
      assert.equal(r.TC, 0);
      assert.deepEqual(r.answerRRs.map((a) => a.RDATAHEX).sort(), ['C0000201', 'C0000202']);
      assert.equal(r.additionalRRs.filter((a) => a.TYPE === 41).length, 0, 'no OPT for a query without one');
    });

    it('kdig +tcp: the answer over TCP', async () => {
      const before = ld.server.metrics.get('tcp_queries_total');
      const { replies, result } = await kdig(ld.port, ['+tcp', 'www.client.test', 'AAAA']);
      assert.equal(replies.length, 1, result.stderr);
      assert.equal(replies[0]!.RCODE, 0);
      assert.deepEqual(replies[0]!.answerRRs.map((a) => a.RDATAHEX), ['20010DB8000000000000000000000001']);
      assert.equal(ld.server.metrics.get('tcp_queries_total'), before + 1);
    });

    it('kdig +bufsize=512 +ignore on a 1.9 KB answer: TC=1 within 512 with an OPT', async () => {
      const { replies, result } = await kdig(ld.port, ['+bufsize=512', '+ignore', 'big.client.test', 'TXT']);
      assert.equal(replies.length, 1, result.stderr);
      const r = replies[0]!;
      assert.equal(r.TC, 1);
      assert.equal(r.ANCOUNT, 0);
      assert.ok(r.msgLength !== undefined && r.msgLength <= 512, `reply of ${r.msgLength} bytes`);
      assert.equal(r.additionalRRs.filter((a) => a.TYPE === 41).length, 1);
    });

    it('kdig +bufsize=4096 on a 1.9 KB answer: falls back to TCP and gets the whole RRset', async () => {
      const { replies, result } = await kdig(ld.port, ['+bufsize=4096', 'big.client.test', 'TXT']);
      const last = replies[replies.length - 1];
      assert.ok(last, result.stderr);
      assert.equal(last.TC, 0);
      assert.equal(last.ANCOUNT, 1);
      assert.ok((last.answerRRs[0]?.RDLENGTH ?? 0) > 1232);
    });

    it('kdig +subnet: answered, the Client Subnet option answered, and not sent upstream', async () => {
      const { replies, result } = await kdig(ld.port, ['+subnet=198.51.100.0/24', 'ecs-kdig.client.test', 'A']);
      assert.equal(replies.length, 1, result.stderr);
      const r = replies[0]!;
      assert.equal(r.RCODE, 0);
      assert.equal(r.ANCOUNT, 2);
      const opt = r.additionalRRs.find((a) => a.TYPE === 41);
      assert.ok(opt, 'an EDNS query gets an OPT back');
      assert.deepEqual(kdigOptionCodes(opt), [ECS]);
      for (const codes of optionCodesSentUpstream(up, 'ecs-kdig.client.test')) assert.ok(!codes.includes(ECS));
    });

    it('kdig +tcp +keepopen: six queries on one connection, each answered in order', async () => {
      const names = ['p1', 'p2', 'p3', 'p4', 'p5'].map((p) => `${p}.client.test`);
      const conns = ld.server.metrics.get('tcp_connections_total');
      const queries = ld.server.metrics.get('tcp_queries_total');
      const args = ['+tcp', '+keepopen', ...names.flatMap((n) => [n, 'A']), 'nx.client.test', 'A'];
      const { replies, result } = await kdig(ld.port, args);
      assert.equal(replies.length, 6, `${result.stdout}${result.stderr}`);
      names.forEach((n, i) => {
        assert.equal(replies[i]!.QNAME, `${n}.`);
        assert.equal(replies[i]!.RCODE, 0);
        assert.equal(replies[i]!.ANCOUNT, 2);
      });
      assert.equal(replies[5]!.RCODE, 3, 'NXDOMAIN in the same stream');
      assert.equal(new Set(replies.map((r) => r.ID)).size, 6, 'each reply carries its own ID');
      assert.equal(ld.server.metrics.get('tcp_connections_total'), conns + 1, 'one TCP connection');
      assert.equal(ld.server.metrics.get('tcp_queries_total'), queries + 6);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 2. nsd and Unbound as upstreams

const ZONE_TTL = 300;
const MEDIUM_TXT = txtStrings(5, 140, 'med');
const BIG_TXT = txtStrings(12, 150, 'big');

const quoted = (list: readonly string[]): string => list.map((s) => `"${s}"`).join(' ');

const INTEROP_ZONE = `$ORIGIN interop.test.
$TTL ${ZONE_TTL}
@         IN SOA   ns hostmaster 2024010101 3600 600 86400 60
@         IN NS    ns
@         IN MX    10 mail
@         IN MX    20 mail2
ns        IN A     127.0.0.1
mail      IN A     192.0.2.25
mail2     IN AAAA  2001:db8::25
www       IN A     192.0.2.10
www       IN A     192.0.2.11
www       IN AAAA  2001:db8::10
MiXeD     IN A     192.0.2.77
txt       IN TXT   "hello world" "second string"
alias     IN CNAME www
chain     IN CNAME alias
*.wild    IN A     192.0.2.99
*.wild    IN TXT   "wildcard"
dname     IN DNAME other
x.other   IN A     192.0.2.50
_sip._udp IN SRV   10 5 5060 www
opaque    IN TYPE65534 \\# 3 abcdef
ttl       IN A     192.0.2.60
aa        IN A     192.0.2.61
aa2       IN A     192.0.2.62
medium    IN TXT   ${quoted(MEDIUM_TXT)}
big       IN TXT   ${quoted(BIG_TXT)}
`;

interface Question {
  name: string;
  type: string;
  args?: string[];
  why: string;
}

const QUESTIONS: readonly Question[] = [
  { name: 'www.interop.test', type: 'A', why: 'two A records' },
  { name: 'www.interop.test', type: 'AAAA', why: 'AAAA' },
  { name: 'interop.test', type: 'MX', why: 'MX at the apex' },
  { name: 'interop.test', type: 'SOA', why: 'SOA' },
  { name: 'interop.test', type: 'NS', why: 'NS' },
  { name: 'txt.interop.test', type: 'TXT', why: 'TXT with two strings' },
  { name: 'alias.interop.test', type: 'A', why: 'CNAME to an A RRset' },
  { name: 'chain.interop.test', type: 'AAAA', why: 'CNAME chain' },
  { name: 'alias.interop.test', type: 'CNAME', why: 'CNAME asked for itself' },
  { name: 'host.wild.interop.test', type: 'A', why: 'wildcard' },
  { name: 'a.b.wild.interop.test', type: 'TXT', why: 'wildcard two labels deep' },
  { name: 'y.dname.interop.test', type: 'A', why: 'DNAME to a name without data (NXDOMAIN)' },
  { name: 'x.dname.interop.test', type: 'A', why: 'DNAME with a synthesized CNAME' },
  { name: '_sip._udp.interop.test', type: 'SRV', why: 'SRV' },
  { name: 'opaque.interop.test', type: 'TYPE65534', why: 'a type linedns does not know (RFC 3597)' },
  { name: 'nx.interop.test', type: 'A', why: 'NXDOMAIN' },
  { name: 'www.interop.test', type: 'MX', why: 'NODATA' },
  { name: 'mixed.INTEROP.test', type: 'A', why: 'case-insensitive owner' },
  { name: 'medium.interop.test', type: 'TXT', why: '~750 bytes over UDP' },
  { name: 'big.interop.test', type: 'TXT', args: ['+tcp'], why: '~1.9 KB over TCP' },
];

/**
 * Asks `q` of the reference server and of linedns and compares: same rcode, same answer RRsets
 * (order and TTL aside, TTLs never above the zone's), proxy flags, and the SOA of a negative answer.
 */
async function compareWith(reference: number, linedns: number, q: Question): Promise<void> {
  const args = [...(q.args ?? []), q.name, q.type];
  const [direct, proxied] = await Promise.all([dig(reference, args), dig(linedns, args)]);
  const d = direct.reply;
  const p = proxied.reply;
  assert.equal(p.status, d.status, 'rcode');
  assert.deepEqual(recordSet(p.answer), recordSet(d.answer), 'answer RRsets');
  for (const r of [...p.answer, ...p.authority]) assert.ok(r.ttl <= ZONE_TTL, `${recordKey(r)}: TTL ${r.ttl} above the zone's ${ZONE_TTL}`);
  assertProxyFlags(p);
  assert.ok(!p.flags.has('tc'), 'no TC');
  assert.deepEqual(p.question.map((x) => x.name), d.question.map((x) => x.name), "question in the client's spelling");
  if (p.status === 'NXDOMAIN' || (p.status === 'NOERROR' && p.answer.length === 0)) {
    const soaOf = (r: DigReply): string[] => recordSet(r.authority.filter((x) => x.type === 'SOA'));
    assert.deepEqual(soaOf(p), soaOf(d), 'a negative answer carries the zone SOA (RFC 2308)');
  }
}

/** Cached TTLs age in whole seconds: wait one and a bit. */
function waitPastOneSecond(): Promise<void> {
  return sleep(1100);
}

describe('linedns in front of nsd', { skip: NSD === null ? 'nsd not installed' : DIG === null ? 'dig not installed' : false }, () => {
  let nsd: Daemon;
  let ld: Running;

  before(async () => {
    nsd = await startNsd([{ origin: 'interop.test', text: INTEROP_ZONE }]);
    ld = await startLineDns({ config: { upstreams: [`127.0.0.1:${nsd.port}`] } });
  });
  after(async () => {
    await ld?.close();
    await nsd?.stop();
  });

  for (const q of QUESTIONS) {
    it(`${q.name} ${q.type} (${q.why}) answers as nsd does`, () => compareWith(nsd.port, ld.port, q));
  }

  it('big TXT over UDP with +bufsize=512: linedns replies TC=1 within 512 bytes', async () => {
    const { reply } = await dig(ld.port, ['+bufsize=512', '+ignore', 'big.interop.test', 'TXT']);
    assert.equal(reply.status, 'NOERROR');
    assert.ok(reply.flags.has('tc'));
    assert.equal(reply.counts.answer, 0);
    assert.ok(reply.size !== null && reply.size <= 512);
  });

  it('big TXT over UDP with the default bufsize: TC from linedns, then the full RRset over TCP', async () => {
    const { reply } = await dig(ld.port, ['big.interop.test', 'TXT']);
    assert.equal(reply.transport, 'TCP', 'dig had to retry over TCP');
    assert.equal(reply.answer.length, 1);
    assert.deepEqual(reply.answer[0]!.rdata.match(/"[^"]*"/g), BIG_TXT.map((s) => `"${s}"`));
    assert.ok(ld.server.metrics.get('forward_tcp_retries_total') >= 1, 'nsd truncated its UDP reply, so linedns asked it over TCP');
  });

  it('cached answers count down: a second ask a second later has a lower TTL', async () => {
    const first = (await dig(ld.port, ['ttl.interop.test', 'A'])).reply;
    await waitPastOneSecond();
    const hits = ld.server.metrics.get('cache_hits_total');
    const second = (await dig(ld.port, ['ttl.interop.test', 'A'])).reply;
    assert.equal(ld.server.metrics.get('cache_hits_total'), hits + 1, 'the second answer came from the cache');
    assert.equal(first.answer[0]!.ttl, ZONE_TTL);
    assert.ok(second.answer[0]!.ttl <= ZONE_TTL - 1, `TTL ${second.answer[0]!.ttl} after a second`);
    assert.deepEqual(recordSet(second.answer), recordSet(first.answer));
  });

  it('a cached answer does not claim authority (AA=0), as Unbound and dnsmasq answer from cache', async () => {
    // nsd sets AA; linedns may pass it through on a fresh forward (as dnsmasq does), but an
    // answer from its cache is not authoritative data (RFC 1035 4.1.1, RFC 2181 5.4.1).
    const direct = (await dig(nsd.port, ['aa.interop.test', 'A'])).reply;
    assert.ok(direct.flags.has('aa'), 'nsd is authoritative');
    await dig(ld.port, ['aa.interop.test', 'A']);
    const hits = ld.server.metrics.get('cache_hits_total');
    const cached = (await dig(ld.port, ['aa.interop.test', 'A'])).reply;
    assert.equal(ld.server.metrics.get('cache_hits_total'), hits + 1, 'served from the cache');
    assert.equal(cached.status, 'NOERROR');
    assert.ok(!cached.flags.has('aa'), `flags of the cached answer: ${[...cached.flags].join(' ')}`);
  });

  it('kdig +tcp +keepopen through linedns to nsd: every answer matches nsd', { skip: KDIG === null ? 'kdig not installed' : false }, async () => {
    const asks = ['www.interop.test', 'A', 'txt.interop.test', 'TXT', 'nx.interop.test', 'A', 'big.interop.test', 'TXT'];
    const [viaLd, viaNsd] = await Promise.all([kdig(ld.port, ['+tcp', '+keepopen', ...asks]), kdig(nsd.port, ['+tcp', '+keepopen', ...asks])]);
    assert.equal(viaLd.replies.length, 4, viaLd.result.stderr);
    assert.equal(viaNsd.replies.length, 4, viaNsd.result.stderr);
    viaLd.replies.forEach((r, i) => {
      const ref = viaNsd.replies[i]!;
      assert.equal(r.RCODE, ref.RCODE);
      assert.deepEqual(r.answerRRs.map((a) => `${a.TYPE} ${a.RDATAHEX}`).sort(), ref.answerRRs.map((a) => `${a.TYPE} ${a.RDATAHEX}`).sort());
      assert.equal(r.RA, 1);
    });
  });
});

describe('linedns in front of Unbound (forwarding to nsd)', {
  skip: NSD === null ? 'nsd not installed' : UNBOUND === null ? 'unbound not installed' : DIG === null ? 'dig not installed' : false,
}, () => {
  let nsd: Daemon;
  let unbound: Daemon;
  let ld: Running;

  before(async () => {
    nsd = await startNsd([{ origin: 'interop.test', text: INTEROP_ZONE }]);
    unbound = await startUnbound(nsd.port, { name: 'interop.test', type: 'SOA' });
    ld = await startLineDns({ config: { upstreams: [`127.0.0.1:${unbound.port}`] } });
  });
  after(async () => {
    await ld?.close();
    await unbound?.stop();
    await nsd?.stop();
  });

  it('Unbound itself answers interop.test from nsd (the setup works)', async () => {
    const { reply } = await dig(unbound.port, ['www.interop.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assert.ok(reply.flags.has('ra') && !reply.flags.has('aa'));
    assert.equal(reply.answer.length, 2);
  });

  for (const q of QUESTIONS) {
    it(`${q.name} ${q.type} (${q.why}) answers as Unbound does`, () => compareWith(unbound.port, ld.port, q));
  }

  it('big TXT over UDP with +bufsize=512: TC=1; over TCP: the full RRset as Unbound gives it', async () => {
    const small = (await dig(ld.port, ['+bufsize=512', '+ignore', 'big.interop.test', 'TXT'])).reply;
    assert.ok(small.flags.has('tc'));
    assert.equal(small.counts.answer, 0);
    assert.ok(small.size !== null && small.size <= 512);
    const [direct, full] = await Promise.all([dig(unbound.port, ['+tcp', 'big.interop.test', 'TXT']), dig(ld.port, ['+tcp', 'big.interop.test', 'TXT'])]);
    assert.equal(full.reply.transport, 'TCP');
    assert.deepEqual(recordSet(full.reply.answer), recordSet(direct.reply.answer));
  });

  it('an answer Unbound gives without AA reaches the client without AA', async () => {
    const { reply } = await dig(ld.port, ['aa2.interop.test', 'A']);
    assert.equal(reply.status, 'NOERROR');
    assert.ok(!reply.flags.has('aa'));
    assert.ok(reply.flags.has('ra'));
  });
});
