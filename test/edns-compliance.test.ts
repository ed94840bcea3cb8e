// ISC's EDNS compliance checks (genreport, RFC 8906 section 8) against linedns: with dig, and each
// genreport -R -f check by name over raw sockets; plus AA on upstream answers and class refusal.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import { startLineDns, type Running } from './helpers/server.js';
import { TestUpstream, soa, type UpstreamHandler } from './helpers/upstream.js';
import { dig, findBinary, type DigReply } from './helpers/peers.js';
import { GENREPORT_FULL, runCheck, runGenreport } from './helpers/genreport.js';
import { udpExchange } from './helpers/client.js';
import { rawQuery } from './helpers/packets.js';

const DIG = findBinary('dig');

/** The options RFC 8906 section 8 adds to every query: no cookie, so replies are comparable. */
const BASE = ['+nocookie'];
const ZONE = 'edns.test';
const ECS = 8;

/**
 * Upstream for edns.test. Names under v.edns.test behave like a validating resolver (AD only
 * when the query has AD or DO, RFC 6840 5.7); every other name comes back with AD always set,
 * so linedns's own AD filtering is what the tests see.
 */
const upstreamZone: UpstreamHandler = ({ packet }) => {
  const q = packet.questions![0]!;
  const name = q.name.toLowerCase();
  const opt = (packet.additionals ?? []).find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
  const asked = (packet.flags! & dnsPacket.AUTHENTIC_DATA) !== 0 || opt?.flag_do === true;
  const validator = name.endsWith('.v.edns.test');
  const ad = !validator || asked ? dnsPacket.AUTHENTIC_DATA : 0;
  const flags = (packet.flags! & (dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED)) | dnsPacket.RECURSION_AVAILABLE | ad;
  if (q.type === 'SOA' && name === ZONE) return { flags, answers: [soa(ZONE, 300)] };
  if (q.type === 'TXT' && name === `medium.${ZONE}`) {
    // ~750 bytes: fits the 1232 linedns advertises upstream, not a 512-byte client.
    return { flags, answers: [{ name: q.name, type: 'TXT', ttl: 300, data: Array.from({ length: 5 }, (_, i) => `m${i}`.padEnd(140, 'm')) }] };
  }
  if (q.type === 'TXT' && name === `small.${ZONE}`) {
    // ~330 bytes: over 100 but within 512.
    return { flags, answers: [{ name: q.name, type: 'TXT', ttl: 300, data: ['s'.padEnd(150, 's'), 't'.padEnd(150, 't')] }] };
  }
  if (q.type === 'A') return { flags, answers: [{ name: q.name, type: 'A', ttl: 300, data: '192.0.2.53' }] };
  return { flags, authorities: [soa(ZONE, 60)] };
};

function soaAnswered(r: DigReply): void {
  assert.equal(r.status, 'NOERROR');
  assert.deepEqual(r.answer.map((x) => `${x.name} ${x.type}`), [`${ZONE}. SOA`]);
}

function assertNoOptions(r: DigReply): void {
  assert.ok(r.edns, 'OPT present');
  assert.deepEqual(r.edns.options.map((o) => o.name), [], 'no EDNS option echoed');
}

function assertBadvers(r: DigReply): void {
  assert.equal(r.status, 'BADVERS');
  assert.ok(r.edns, 'BADVERS travels in an OPT');
  assert.equal(r.edns.version, 0, 'the OPT names the version we do speak');
  assert.equal(r.counts.answer, 0, 'no answer to a version we do not speak');
}

describe('ISC EDNS compliance (dig against linedns)', { skip: DIG === null ? 'dig not installed' : false }, () => {
  let up: TestUpstream;
  let ld: Running;
  const q = async (...args: string[]): Promise<DigReply> => (await dig(ld.port, [...BASE, ...args])).reply;

  before(async () => {
    up = await TestUpstream.start(upstreamZone);
    ld = await startLineDns({ config: { upstreams: [up.address] } });
  });
  after(async () => {
    await ld?.close();
    await up?.close();
  });

  it('dns: a plain query gets NOERROR and no OPT back', async () => {
    const r = await q('+noedns', ZONE, 'SOA');
    soaAnswered(r);
    assert.equal(r.edns, null);
    assert.equal(r.counts.additional, 0);
  });

  it('edns: an EDNS 0 query gets an OPT of version 0, no unknown flags, no options', async () => {
    const r = await q('+edns=0', ZONE, 'SOA');
    soaAnswered(r);
    assert.ok(r.edns);
    assert.equal(r.edns.version, 0);
    assert.equal(r.edns.mbz, 0);
    assert.deepEqual(r.edns.flags, []);
    assert.ok(r.edns.udp >= 512, `advertised UDP size ${r.edns.udp}`);
    assertNoOptions(r);
  });

  it('edns1: EDNS version 1 gets BADVERS with an OPT of version 0', async () => {
    assertBadvers(await q('+edns=1', '+noednsneg', ZONE, 'SOA'));
  });

  it('edns1 over TCP: BADVERS too', async () => {
    const r = await q('+tcp', '+edns=1', '+noednsneg', ZONE, 'SOA');
    assert.equal(r.transport, 'TCP');
    assertBadvers(r);
  });

  it('ednsopt: an unknown option (100) is ignored and not echoed', async () => {
    const r = await q('+edns=0', '+ednsopt=100', ZONE, 'SOA');
    soaAnswered(r);
    assertNoOptions(r);
  });

  it('ednsopt with data: an unknown option carrying bytes is ignored and not echoed', async () => {
    const r = await q('+edns=0', '+ednsopt=65001:deadbeef', ZONE, 'SOA');
    soaAnswered(r);
    assertNoOptions(r);
  });

  it('edns1opt: version 1 with option 100 gets BADVERS, option not echoed', async () => {
    const r = await q('+edns=1', '+noednsneg', '+ednsopt=100', ZONE, 'SOA');
    assertBadvers(r);
    assertNoOptions(r);
  });

  it('ednsflags: an unknown EDNS flag (0x40) is ignored and the reply has no Z bits', async () => {
    const r = await q('+edns=0', '+ednsflags=0x40', ZONE, 'SOA');
    soaAnswered(r);
    assert.ok(r.edns);
    assert.equal(r.edns.mbz, 0, 'MBZ bits clear');
    assert.deepEqual(r.edns.flags, [], 'DO not invented');
  });

  it('ednsflags: every unknown EDNS flag (0x7fff) at once: still ignored, Z bits clear', async () => {
    const r = await q('+edns=0', '+ednsflags=0x7fff', ZONE, 'SOA');
    soaAnswered(r);
    assert.equal(r.edns?.mbz, 0);
  });

  it('edns1flags: version 1 with flag 0x40 gets BADVERS with Z bits clear', async () => {
    const r = await q('+edns=1', '+noednsneg', '+ednsflags=0x40', ZONE, 'SOA');
    assertBadvers(r);
    assert.equal(r.edns?.mbz, 0);
  });

  it('edns1optflags: version 1, option 100, flag 0x40 and DO: BADVERS, nothing unknown echoed', async () => {
    const r = await q('+edns=1', '+noednsneg', '+ednsopt=100', '+ednsflags=0x40', '+dnssec', ZONE, 'SOA');
    assertBadvers(r);
    assertNoOptions(r);
    assert.equal(r.edns?.mbz, 0);
  });

  it('do: DO is echoed when asked', async () => {
    const r = await q('+edns=0', '+dnssec', ZONE, 'SOA');
    soaAnswered(r);
    assert.deepEqual(r.edns?.flags, ['do']);
  });

  it('do: DO is not set when not asked', async () => {
    const r = await q('+edns=0', '+nodnssec', ZONE, 'SOA');
    assert.deepEqual(r.edns?.flags, []);
  });

  it('optlist: NSID, Client Subnet, EXPIRE and a cookie together: NOERROR, only Client Subnet answered (RFC 7871 7.2.1)', async () => {
    const r = await q('+edns=0', '+nsid', '+subnet=0.0.0.0/0', '+expire', '+cookie=0102030405060708', ZONE, 'SOA');
    soaAnswered(r);
    assert.ok(r.edns, 'OPT present');
    // The client's /0 back, scope 0: the answer depended on no part of its address.
    assert.deepEqual(r.edns.options.map((o) => `${o.name} ${o.text}`), ['CLIENT-SUBNET 0.0.0.0/0/0']);
  });

  it('zflag: the header Z bit of the query is not echoed', async () => {
    const r = await q('+noedns', '+zflag', ZONE, 'SOA');
    soaAnswered(r);
    assert.equal(r.headerMbz, 0, 'Z clear');
  });

  it('rd: RD echoed set and echoed clear', async () => {
    const on = await q('+rec', `rd-on.${ZONE}`, 'A');
    const off = await q('+norec', `rd-off.${ZONE}`, 'A');
    assert.ok(on.flags.has('rd'));
    assert.ok(!off.flags.has('rd'));
    assert.ok(on.flags.has('ra') && off.flags.has('ra'));
  });

  it('cd: CD echoed set and echoed clear', async () => {
    const on = await q('+cd', `cd.${ZONE}`, 'A');
    const off = await q('+nocd', `cd.${ZONE}`, 'A');
    assert.ok(on.flags.has('cd'));
    assert.ok(!off.flags.has('cd'));
  });

  it('ad: AD only for a client that asked with AD or DO, though the upstream always sets it', async () => {
    const name = `ad.${ZONE}`;
    const plain = await q('+noadflag', '+nodnssec', name, 'A');
    const withAd = await q('+adflag', '+nodnssec', name, 'A');
    const withDo = await q('+noadflag', '+dnssec', name, 'A');
    const noEdns = await q('+noadflag', '+noedns', name, 'A');
    assert.ok(!plain.flags.has('ad'), 'no AD when neither AD nor DO was asked');
    assert.ok(!noEdns.flags.has('ad'), 'no AD for a plain non-EDNS query');
    assert.ok(withAd.flags.has('ad'), 'AD for a client that set AD');
    assert.ok(withDo.flags.has('ad'), 'AD for a client that set DO');
  });

  it('ad: a validating upstream\'s AD reaches an AD-asking client even after a client that did not ask', async () => {
    // A validator (RFC 6840 5.7) sets AD only when asked; the first client here did not ask,
    // so its answer has AD=0. The next client sets AD and must not get that AD-less copy.
    const name = `mixed.v.${ZONE}`;
    const first = await q('+noadflag', '+nodnssec', name, 'A');
    assert.ok(!first.flags.has('ad'));
    const second = await q('+adflag', '+nodnssec', name, 'A');
    assert.ok(second.flags.has('ad'), `flags for the AD-asking client: ${[...second.flags].join(' ')}`);
  });

  for (const edns of ['+noedns', '+edns=0']) {
    it(`opcode: unknown opcode 15 (${edns}) gets NOTIMP with the opcode echoed and no answer`, async () => {
      const r = await q(edns, '+opcode=15', ZONE, 'SOA');
      assert.equal(r.status, 'NOTIMP');
      assert.equal(r.opcode, 'RESERVED15');
      assert.equal(r.counts.answer, 0);
      assert.ok(r.flags.has('qr'));
    });
  }

  it('opcode: STATUS (2) gets NOTIMP with the opcode echoed', async () => {
    const r = await q('+noedns', '+opcode=2', ZONE, 'SOA');
    assert.equal(r.status, 'NOTIMP');
    assert.equal(r.opcode, 'STATUS');
  });

  it('edns@512: a 750-byte answer to an EDNS-512 query comes back within 512 bytes, with TC and an OPT', async () => {
    const r = await q('+bufsize=512', '+ignore', `medium.${ZONE}`, 'TXT');
    assert.ok(r.size !== null && r.size <= 512, `reply of ${r.size} bytes`);
    assert.ok(r.flags.has('tc'));
    assert.ok(r.edns, 'the truncated reply still carries an OPT');
  });

  it('edns@512 with DO: within 512 bytes, DO still echoed', async () => {
    const r = await q('+bufsize=512', '+dnssec', '+ignore', `medium.${ZONE}`, 'TXT');
    assert.ok(r.size !== null && r.size <= 512);
    assert.ok(r.flags.has('tc'));
    assert.deepEqual(r.edns?.flags, ['do']);
  });

  it('edns@512: an answer that fits 512 is not truncated', async () => {
    const r = await q('+bufsize=512', '+ignore', `small.${ZONE}`, 'TXT');
    assert.ok(!r.flags.has('tc'));
    assert.equal(r.answer.length, 1);
    assert.ok(r.size !== null && r.size <= 512);
  });

  it('a bufsize below 512 counts as 512 (RFC 6891 6.2.5): a 330-byte answer is not truncated', async () => {
    const r = await q('+bufsize=100', '+ignore', `small.${ZONE}`, 'TXT');
    assert.ok(!r.flags.has('tc'));
    assert.equal(r.answer.length, 1);
  });

  it('no EDNS: a 750-byte answer comes back within 512 bytes with TC', async () => {
    const r = await q('+noedns', '+ignore', `medium.${ZONE}`, 'TXT');
    assert.ok(r.size !== null && r.size <= 512);
    assert.ok(r.flags.has('tc'));
    assert.equal(r.edns, null);
  });

  it('ednstcp: EDNS over TCP gets the whole 750-byte answer and an OPT', async () => {
    const r = await q('+tcp', '+bufsize=512', `medium.${ZONE}`, 'TXT');
    assert.equal(r.transport, 'TCP');
    assert.ok(!r.flags.has('tc'));
    assert.equal(r.answer.length, 1);
    assert.ok(r.edns);
    assert.equal(r.edns.version, 0);
  });

  it('Client Subnet from an untrusted client is not sent upstream', async () => {
    const name = `ecs.${ZONE}`;
    await q('+subnet=203.0.113.0/24', name, 'A');
    const sent = up.requests.filter((r) => r.packet.questions?.[0]?.name.toLowerCase() === name);
    assert.ok(sent.length >= 1);
    for (const r of sent) {
      const codes = (r.packet.additionals ?? []).flatMap((a) => (a.type === 'OPT' ? (a as dnsPacket.OptAnswer).options.map((o) => Number(o.code)) : []));
      assert.ok(!codes.includes(ECS));
    }
  });
});

/**
 * A deliberately non-compliant server: it echoes the query back with QR set, OPT, options,
 * unknown flags and the header Z bit included. The checks above must be able to see all of it,
 * or a passing run would prove nothing.
 */
describe('harness self-check: the dig parser sees what a non-compliant server echoes', { skip: DIG === null ? 'dig not installed' : false }, () => {
  let sock: dgram.Socket;
  let port: number;

  before(async () => {
    sock = dgram.createSocket('udp4');
    sock.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const out = Buffer.from(msg);
      out[2] = out[2]! | 0x80; // QR
      out[3] = (out[3]! & 0xf0) | 0x80; // RA, rcode 0, Z and AD/CD as sent
      sock.send(out, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    port = sock.address().port;
  });
  after(async () => {
    await new Promise<void>((r) => sock.close(() => r()));
  });

  it('echoed option 100, Client Subnet, Z bits and header Z are all detected', async () => {
    const { reply } = await dig(port, [...BASE, '+edns=0', '+ednsopt=100:abcd', '+subnet=192.0.2.0/24', '+ednsflags=0x40', '+zflag', '+dnssec', ZONE, 'SOA']);
    assert.ok(reply.edns);
    assert.deepEqual(reply.edns.options.map((o) => o.code).sort((a, b) => (a ?? 0) - (b ?? 0)), [ECS, 100]);
    assert.equal(reply.edns.mbz, 0x40);
    assert.deepEqual(reply.edns.flags, ['do']);
    assert.notEqual(reply.headerMbz, 0);
  });

  it('an echoed EDNS version 1 is seen as version 1', async () => {
    const { reply } = await dig(port, [...BASE, '+edns=1', '+noednsneg', ZONE, 'SOA']);
    assert.equal(reply.edns?.version, 1);
  });
});

const GR_ZONE = 'genreport.test';
const DNSKEY_RDATA = (i: number): dnsPacket.Answer => ({ name: GR_ZONE, type: 'DNSKEY', ttl: 300, data: { flags: 256 + (i === 0 ? 1 : 0), algorithm: 8, key: Buffer.alloc(132, i + 1) } }) as dnsPacket.Answer;

/**
 * The zone genreport asks about, served as an authoritative server would: AA on every answer
 * (linedns must not pass it on, fresh or cached), RRSIGs for DO queries, and a DNSKEY RRset of
 * about 700 octets, so that edns@512 has to be truncated.
 */
const genreportZone: UpstreamHandler = ({ packet }) => {
  const q = packet.questions![0]!;
  const opt = (packet.additionals ?? []).find((a): a is dnsPacket.OptAnswer => a.type === 'OPT');
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (packet.flags! & (dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED));
  const sig = (covered: string): dnsPacket.Answer[] =>
    opt?.flag_do ? [{ name: q.name, type: 'RRSIG', ttl: 300, data: { typeCovered: covered, algorithm: 8, labels: 2, originalTTL: 300, expiration: 2000000000, inception: 1700000000, keyTag: 1, signersName: GR_ZONE, signature: Buffer.alloc(64, 7) } } as dnsPacket.Answer] : [];
  if (q.name.toLowerCase() !== GR_ZONE) return { flags, answers: [{ name: q.name, type: 'A', ttl: 300, data: '192.0.2.9' }] };
  if (q.type === 'SOA') return { flags, answers: [soa(GR_ZONE, 300), ...sig('SOA')] };
  if (q.type === 'DNSKEY') return { flags, answers: [0, 1, 2, 3].map(DNSKEY_RDATA).concat(sig('DNSKEY')) };
  return { flags, authorities: [soa(GR_ZONE, 300)] };
};

const isOk = (r: string | undefined): boolean => r === 'ok' || (r?.startsWith('ok,') ?? false);

/**
 * ISC genreport's recursive-mode full checks (genreport -R -f), each sent as genreport sends it
 * over raw sockets (dig cannot set RA or TC in a query) and judged by genreport's rules.
 */
describe('genreport -R -f: every check against linedns forwarding an authoritative zone', () => {
  let up: TestUpstream;
  let ld: Running;
  before(async () => {
    up = await TestUpstream.start(genreportZone);
    ld = await startLineDns({ config: { upstreams: [up.address] } });
  });
  after(async () => {
    await ld?.close();
    await up?.close();
  });

  for (const c of GENREPORT_FULL) {
    it(c.name, async () => {
      const r = await runCheck(c, GR_ZONE, ld.port);
      assert.ok(isOk(r.result), `${c.name}=${r.result} (reply ${r.reply?.toString('hex')})`);
      if (c.name === 'do') assert.equal(r.result, 'ok', 'signed: the do check with its RRSIG');
    });
  }

  it('signed: DO answers carry the upstream\'s RRSIG and the check is ok,yes', async () => {
    const results = await runGenreport(GR_ZONE, ld.port);
    assert.equal(results.get('signed'), 'ok,yes');
  });

  it('all 32 checks again, now answered from the cache: still all ok (no AA on cached copies)', async () => {
    const results = await runGenreport(GR_ZONE, ld.port);
    const bad = [...results].filter(([, r]) => !isOk(r));
    assert.equal(results.size, 32);
    assert.deepEqual(bad, [], `${32 - bad.length}/32 ok`);
  });

  it('AA is never set on an upstream answer, fresh or cached, though the upstream sets it', async () => {
    for (let i = 0; i < 2; i++) {
      const reply = await udpExchange(ld.port, rawQuery(`aa-${i}.${GR_ZONE}`, 1, { id: 99 }));
      const again = await udpExchange(ld.port, rawQuery(`aa-${i}.${GR_ZONE}`, 1, { id: 100 }));
      for (const r of [reply, again]) {
        assert.ok(r);
        assert.equal(r.readUInt16BE(2) & 0x0400, 0, `AA in ${r.toString('hex')}`);
        assert.equal(r.readUInt16BE(6), 1, 'the answer itself came through');
      }
    }
  });

  it('a class other than IN, CH and ANY is REFUSED at once and never forwarded', async () => {
    const before = up.requests.length;
    for (const klass of [4660, 4, 254]) {
      const t = Date.now();
      const reply = await udpExchange(ld.port, rawQuery(`class.${GR_ZONE}`, 1, { id: 5, klass }), { timeoutMs: 3000 });
      assert.ok(reply);
      assert.equal(reply.readUInt16BE(2) & 0xf, 5, `class ${klass}: REFUSED`);
      assert.ok(Date.now() - t < 1000);
    }
    assert.equal(up.requests.length, before, 'nothing went upstream');
    for (const klass of [1, 3, 255]) {
      const reply = await udpExchange(ld.port, rawQuery(`class-${klass}.${GR_ZONE}`, 1, { id: 6, klass }), { timeoutMs: 3000 });
      assert.ok(reply);
      assert.notEqual(reply.readUInt16BE(2) & 0xf, 5, `class ${klass} is not refused`);
    }
  });
});
