// The reply renamer of src/lib/dns/rename.ts: every name it must map is mapped, the rest is copied
// octet for octet, names are compressed where RFC 3597 allows, and hostile input is refused.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { scanMessage } from '../src/lib/dns/message.js';
import { keyToWire, readName } from '../src/lib/dns/name.js';
import { mapperFromRules, renameMessage, type NameMapper } from '../src/lib/dns/rename.js';
import { header, nameWire, question, rr, u16 } from './helpers/packets.js';

type Packet = dnsPacket.Packet;
type Answer = dnsPacket.Answer;

/** The reverse of a stage that asks foo.novalocal for www.example.org and *.prod.example.com under novalocal. */
const back = mapperFromRules([
  { from: 'foo.novalocal', to: 'www.example.org', suffix: false },
  { from: 'novalocal', to: 'prod.example.com', suffix: true },
]);

function reply(p: Partial<Packet>): Buffer {
  return dnsPacket.encode({ type: 'response', id: 0x4242, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, ...p });
}

function renamed(buf: Buffer, map: NameMapper = back): Buffer {
  const out = renameMessage(buf, map);
  if (typeof out === 'string') assert.fail(out);
  return out;
}

function mustScan(buf: Buffer): ReturnType<typeof scanMessage> & object {
  const s = scanMessage(buf);
  if (typeof s === 'string') assert.fail(`output does not scan: ${s}`);
  return s;
}

/** What mapping `p`'s names should give: the model the renamer is checked against. */
function mapDecoded(p: Packet, map: NameMapper): Packet {
  const m = (name: string): string => {
    const key = name === '' || name === '.' ? '.' : name.toLowerCase();
    return map(key) ?? name;
  };
  const rec = (a: Answer): Answer => {
    if (a.type === 'OPT') return a;
    const r = { ...a, name: m(a.name) } as Answer;
    switch (r.type) {
      case 'CNAME':
      case 'DNAME':
      case 'NS':
      case 'PTR':
        return { ...r, data: m(r.data) };
      case 'MX':
        return { ...r, data: { ...r.data, exchange: m(r.data.exchange) } };
      case 'SRV':
        return { ...r, data: { ...r.data, target: m(r.data.target) } };
      case 'SOA':
        return { ...r, data: { ...r.data, mname: m(r.data.mname), rname: m(r.data.rname) } };
      default:
        return r;
    }
  };
  return {
    ...p,
    questions: (p.questions ?? []).map((q) => ({ ...q, name: m(q.name) })),
    answers: (p.answers ?? []).map(rec),
    authorities: (p.authorities ?? []).map(rec),
    additionals: (p.additionals ?? []).map(rec),
  };
}

/** The octets of the name at `off`, pointers followed, as a string: case counts, as it does for the renamer. */
function exactOctets(buf: Buffer, off: number): string {
  let out = '';
  for (;;) {
    const len = buf[off]!;
    if (len >= 0xc0) {
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
      continue;
    }
    if (len === 0) return out;
    out += buf.toString('latin1', off, off + len + 1);
    off += len + 1;
  }
}

/**
 * Checks the compression of `buf`: no name in a place that may be compressed spells out a
 * suffix an earlier such name already holds with the same octets (RFC 1035 4.1.4 at its best), and names in SRV,
 * DNAME, SVCB and HTTPS RDATA hold no pointer.
 */
function checkCompression(buf: Buffer): void {
  const scan = mustScan(buf);
  const seen = new Set<string>();
  const compressible = (off: number, what: string): number => {
    for (;;) {
      const len = buf[off]!;
      if (len === 0) return off + 1;
      if (len >= 0xc0) return off + 2;
      const suffix = exactOctets(buf, off);
      assert.ok(!seen.has(suffix), `${what}: ${suffix} written again at ${off}`);
      if (off <= 0x3fff) seen.add(suffix);
      off += len + 1;
    }
  };
  const whole = (off: number, what: string): number => {
    for (;;) {
      const len = buf[off]!;
      assert.ok(len < 0xc0, `${what}: pointer at ${off}`);
      if (len === 0) return off + 1;
      off += len + 1;
    }
  };
  compressible(12, 'question');
  for (const r of scan.records) {
    if (r.type !== 41) compressible(r.start, `owner of type ${r.type}`);
    if (r.klass !== 1) continue;
    if ([2, 5, 12].includes(r.type)) compressible(r.rdStart, `type ${r.type}`);
    else if (r.type === 15) compressible(r.rdStart + 2, 'MX');
    else if (r.type === 6) compressible(compressible(r.rdStart, 'SOA mname'), 'SOA rname');
    else if (r.type === 39) whole(r.rdStart, 'DNAME');
    else if (r.type === 33) whole(r.rdStart + 6, 'SRV');
    else if (r.type === 64 || r.type === 65) whole(r.rdStart + 2, `type ${r.type}`);
  }
}

const opt: dnsPacket.OptAnswer = {
  type: 'OPT',
  name: '.',
  udpPayloadSize: 1232,
  extendedRcode: 0,
  ednsVersion: 0,
  flags: dnsPacket.DNSSEC_OK,
  flag_do: true,
  options: [{ code: 8, ip: '192.0.2.0', sourcePrefixLength: 24, scopePrefixLength: 0, family: 1 }],
};

function dataOf(a: Answer): unknown {
  return (a as { data?: unknown }).data;
}

/** A delegation-shaped reply touching every section: CNAME chain, SOA, NS, glue, OPT. */
function fullReply(): Packet {
  return {
    type: 'response',
    id: 0x4242,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHENTIC_DATA,
    questions: [{ type: 'A', name: 'foo.novalocal', class: 'IN' }],
    answers: [
      { type: 'CNAME', name: 'foo.novalocal', ttl: 300, data: 'bar.novalocal' },
      { type: 'A', name: 'bar.novalocal', ttl: 60, data: '10.0.0.1' },
      { type: 'A', name: 'bar.novalocal', ttl: 61, data: '10.0.0.2' },
    ],
    authorities: [
      { type: 'NS', name: 'novalocal', ttl: 3600, data: 'ns1.novalocal' },
      { type: 'SOA', name: 'novalocal', ttl: 3600, data: { mname: 'ns1.novalocal', rname: 'hostmaster.novalocal', serial: 7, refresh: 1, retry: 2, expire: 3, minimum: 4 } },
    ],
    additionals: [{ type: 'A', name: 'ns1.novalocal', ttl: 3600, data: '10.0.0.53' }, opt],
  };
}

describe('mapperFromRules', () => {
  it('takes exact rules first, then the longest suffix at or above the name', () => {
    const m = mapperFromRules([
      { from: 'novalocal', to: 'prod.example.com', suffix: true },
      { from: 'deep.novalocal', to: 'other.example', suffix: true },
      { from: 'Foo.Novalocal.', to: 'WWW.example.org', suffix: false },
    ]);
    assert.equal(m('foo.novalocal'), 'www.example.org');
    assert.equal(m('x.foo.novalocal'), 'x.foo.prod.example.com');
    assert.equal(m('novalocal'), 'prod.example.com');
    assert.equal(m('a.b.novalocal'), 'a.b.prod.example.com');
    assert.equal(m('a.deep.novalocal'), 'a.other.example');
    assert.equal(m('deep.novalocal'), 'other.example');
    assert.equal(m('xnovalocal'), null);
    assert.equal(m('novalocal.org'), null);
    assert.equal(m('.'), null);
    // An escaped dot is part of a label, not a label boundary.
    assert.equal(m('a\\.novalocal'), null);
    assert.equal(m('a\\..novalocal'), 'a\\..prod.example.com');
  });

  it('handles the root on either side', () => {
    const m = mapperFromRules([{ from: '.', to: 'wrapped', suffix: true }]);
    assert.equal(m('a.b'), 'a.b.wrapped');
    assert.equal(m('.'), 'wrapped');
    const u = mapperFromRules([{ from: 'wrapped', to: '.', suffix: true }]);
    assert.equal(u('a.b.wrapped'), 'a.b');
    assert.equal(u('wrapped'), '.');
  });

  it('refuses what is no name and two rules for one name', () => {
    assert.throws(() => mapperFromRules([{ from: 'a..b', to: 'c', suffix: false }]));
    assert.throws(() => mapperFromRules([{ from: 'a', to: 'x'.repeat(64), suffix: false }]));
    assert.throws(() => mapperFromRules([{ from: 'a', to: 'b', suffix: true }, { from: 'A.', to: 'c', suffix: true }]), /two suffix rules/);
    assert.doesNotThrow(() => mapperFromRules([{ from: 'a', to: 'b', suffix: true }, { from: 'a', to: 'c', suffix: false }]));
  });
});

describe('renameMessage', () => {
  it('maps the question, every owner and every RDATA name, keeping the rest', () => {
    const p = fullReply();
    const out = renamed(dnsPacket.encode(p));
    const got = dnsPacket.decode(out);
    assert.deepEqual(got, dnsPacket.decode(dnsPacket.encode(mapDecoded(p, back))));
    // Spelled out, so the model above cannot hide a mistake it shares.
    assert.equal(got.questions![0]!.name, 'www.example.org');
    assert.deepEqual(got.answers!.map((a) => [a.name, a.type, (a as { ttl: number }).ttl]), [
      ['www.example.org', 'CNAME', 300],
      ['bar.prod.example.com', 'A', 60],
      ['bar.prod.example.com', 'A', 61],
    ]);
    assert.equal((got.answers![0] as { data: string }).data, 'bar.prod.example.com');
    assert.deepEqual(dataOf(got.authorities![1]!), { mname: 'ns1.prod.example.com', rname: 'hostmaster.prod.example.com', serial: 7, refresh: 1, retry: 2, expire: 3, minimum: 4 });
    assert.equal(dataOf(got.authorities![0]!), 'ns1.prod.example.com');
    assert.equal(got.additionals![0]!.name, 'ns1.prod.example.com');
    const o = got.additionals![1] as dnsPacket.OptAnswer;
    assert.equal(o.type, 'OPT');
    assert.equal(o.udpPayloadSize, 1232);
    assert.equal(o.flags, dnsPacket.DNSSEC_OK);
    assert.deepEqual(o.options, (dnsPacket.decode(dnsPacket.encode(p)).additionals![1] as dnsPacket.OptAnswer).options);
    assert.equal(o.options.length, 1);
    // Header octets 0-11 (ID, flags, counts) are untouched.
    assert.deepEqual(out.subarray(0, 12), dnsPacket.encode(p).subarray(0, 12));
    checkCompression(out);
    // A caller that scanned the reply already passes its scan: same result.
    const wire = dnsPacket.encode(p);
    assert.deepEqual(renameMessage(wire, back, mustScan(wire)), out);
  });

  it('compresses: the renamed reply is far smaller than the same names written whole', () => {
    const p = fullReply();
    const out = renamed(dnsPacket.encode(p));
    // dns-packet never compresses, so its encoding of the expected reply is the uncompressed size.
    const whole = dnsPacket.encode(mapDecoded(p, back)).length;
    assert.ok(out.length < whole - 100, `${out.length} vs ${whole}`);
    // The question is whole at 12; the CNAME's owner is a pointer to it.
    const scan = mustScan(out);
    assert.deepEqual([...out.subarray(scan.records[0]!.start, scan.records[0]!.start + 2)], [0xc0, 12]);
    // Its target spells only "bar" and points to "prod.example.com" nowhere before: whole.
    // The A records' owners then point into the CNAME's RDATA.
    const cnameData = scan.records[0]!.rdStart;
    assert.deepEqual([...out.subarray(scan.records[1]!.start, scan.records[1]!.start + 2)], [0xc0, cnameData]);
    assert.deepEqual([...out.subarray(scan.records[2]!.start, scan.records[2]!.start + 2)], [0xc0, cnameData]);
  });

  it('writes SRV, DNAME, SVCB and HTTPS names whole, even when an earlier name matches', () => {
    const httpsAlias = Buffer.concat([u16(0), nameWire('foo.novalocal')]);
    const alpn = Buffer.concat([u16(1), u16(3), Buffer.from([2]), Buffer.from('h2')]);
    const svcService = Buffer.concat([u16(1), nameWire('svc.novalocal'), alpn]);
    const wire = Buffer.concat([
      header({ flags: 0x8180, an: 5 }),
      question('foo.novalocal', 65),
      rr(Buffer.from([0xc0, 12]), 33, 1, 30, Buffer.concat([u16(1), u16(2), u16(443), nameWire('foo.novalocal')])),
      rr(Buffer.from([0xc0, 12]), 39, 1, 30, nameWire('bar.novalocal')),
      rr(Buffer.from([0xc0, 12]), 65, 1, 30, httpsAlias),
      rr(Buffer.from([0xc0, 12]), 64, 1, 30, svcService),
      rr(Buffer.from([0xc0, 12]), 5, 1, 30, nameWire('bar.novalocal')),
    ]);
    const out = renamed(wire);
    checkCompression(out);
    const scan = mustScan(out);
    const rd = (i: number): Buffer => out.subarray(scan.records[i]!.rdStart, scan.records[i]!.rdStart + scan.records[i]!.rdLength);
    assert.deepEqual(rd(0), Buffer.concat([u16(1), u16(2), u16(443), keyToWire('www.example.org')]));
    assert.deepEqual(rd(1), keyToWire('bar.prod.example.com'));
    assert.deepEqual(rd(2), Buffer.concat([u16(0), keyToWire('www.example.org')]));
    assert.deepEqual(rd(3), Buffer.concat([u16(1), keyToWire('svc.prod.example.com'), alpn]));
    // The CNAME may compress, but never into the DNAME's or SVCB's RDATA, the only places
    // "prod.example.com" was written before: so it is whole too.
    assert.deepEqual(rd(4), keyToWire('bar.prod.example.com'));
    const srv = dnsPacket.decode(out).answers![0] as dnsPacket.SrvAnswer;
    assert.deepEqual(srv.data, { priority: 1, weight: 2, port: 443, target: 'www.example.org' });
  });

  it('copies RDATA of other types and other classes octet for octet', () => {
    const lookalike = nameWire('foo.novalocal');
    const txt = Buffer.concat([Buffer.from([lookalike.length]), lookalike]);
    const wire = Buffer.concat([
      header({ flags: 0x8180, an: 4 }),
      question('foo.novalocal', 255),
      rr(Buffer.from([0xc0, 12]), 0xff00, 1, 30, lookalike),
      rr(Buffer.from([0xc0, 12]), 16, 1, 30, txt),
      // RRSIG's signer name stays the upstream's: the signature would not verify either way.
      rr(Buffer.from([0xc0, 12]), 46, 1, 30, Buffer.concat([Buffer.alloc(18), lookalike, Buffer.from([1, 2, 3])])),
      // CNAME in class CH: scanMessage checks RDATA names of class IN only, so neither do we.
      rr(Buffer.from([0xc0, 12]), 5, 3, 30, lookalike),
    ]);
    const out = renamed(wire);
    const inScan = mustScan(wire);
    const scan = mustScan(out);
    for (let i = 0; i < 4; i++) {
      const a = inScan.records[i]!;
      const b = scan.records[i]!;
      assert.deepEqual(out.subarray(b.rdStart, b.rdStart + b.rdLength), wire.subarray(a.rdStart, a.rdStart + a.rdLength), `record ${i}`);
      assert.equal(readName(out, b.start)!.name, 'www.example.org');
    }
  });

  it('returns the very same buffer when nothing is renamed', () => {
    const p = fullReply();
    p.questions = [{ type: 'A', name: 'www.other.test', class: 'IN' }];
    p.answers = [{ type: 'A', name: 'www.other.test', ttl: 5, data: '192.0.2.1' }];
    p.authorities = [];
    p.additionals = [opt];
    const wire = dnsPacket.encode(p);
    assert.equal(renameMessage(wire, back), wire);
    // A mapper that answers with the name itself changes nothing either.
    const full = dnsPacket.encode(fullReply());
    assert.equal(renameMessage(full, (n) => n), full);
    assert.equal(renameMessage(full, () => null), full);
  });

  it('calls the mapper once per renamed name', () => {
    const calls: string[] = [];
    const wire = dnsPacket.encode(fullReply());
    renameMessage(wire, (n) => {
      calls.push(n);
      return back(n);
    });
    assert.deepEqual(calls, ['foo.novalocal', 'bar.novalocal', 'novalocal', 'ns1.novalocal', 'hostmaster.novalocal']);
  });

  it('stays right when the mapper itself renames another message', () => {
    const inner = dnsPacket.encode(fullReply());
    let innerOut: Buffer | string = '';
    const out = renamed(dnsPacket.encode(fullReply()), (n) => {
      innerOut = renameMessage(inner, back);
      return back(n);
    });
    assert.deepEqual(out, renamed(dnsPacket.encode(fullReply())));
    assert.deepEqual(innerOut, out);
  });

  it('follows input pointers anywhere, including into RDATA and into the middle of names', () => {
    // 12: foo.novalocal (foo at 12, novalocal at 16), A IN, ends at 31.
    const q = question('foo.novalocal');
    // 31: CNAME owned by ->12; RDATA at 43: "bar" + ->16.
    const cname = rr(Buffer.from([0xc0, 12]), 5, 1, 300, Buffer.from([3, 0x62, 0x61, 0x72, 0xc0, 16]));
    // 49: A owned by ->43 (bar.novalocal).
    const a = rr(Buffer.from([0xc0, 43]), 1, 1, 60, Buffer.from([10, 0, 0, 1]));
    // 65: NS owned by ->16 (novalocal); RDATA at 77: "NS1" + ->16.
    const ns = rr(Buffer.from([0xc0, 16]), 2, 1, 3600, Buffer.from([3, 0x4e, 0x53, 0x31, 0xc0, 16]));
    // 83: MX owned by "mail" + ->77; exchange ->43.
    const mx = rr(Buffer.from([4, 0x6d, 0x61, 0x69, 0x6c, 0xc0, 77]), 15, 1, 30, Buffer.from([0, 10, 0xc0, 43]));
    // Glue owned by ->77, and a PTR to a name out of every rule, in mixed case.
    const glue = rr(Buffer.from([0xc0, 77]), 1, 1, 3600, Buffer.from([10, 0, 0, 53]));
    const ptr = rr(Buffer.from([0xc0, 12]), 12, 1, 30, nameWire('Keep.Me.Example'));
    const wire = Buffer.concat([header({ flags: 0x8180, an: 2, ns: 2, ar: 2 }), q, cname, a, ns, mx, glue, ptr]);
    assert.equal(wire.subarray(31).indexOf(cname), 0);
    assert.equal(wire.subarray(83).indexOf(mx), 0);
    const out = renamed(wire);
    checkCompression(out);
    const got = dnsPacket.decode(out);
    assert.deepEqual(got, mapDecoded(dnsPacket.decode(wire), back));
    assert.equal(dataOf(got.authorities![0]!), 'ns1.prod.example.com');
    assert.equal(got.additionals![0]!.name, 'ns1.prod.example.com');
    assert.equal((got.authorities![1] as dnsPacket.MxAnswer).name, 'mail.ns1.prod.example.com');
    // A kept name keeps its octets, case included.
    assert.equal((got.additionals![1] as { data: string }).data, 'Keep.Me.Example');
  });

  it('refuses a name a suffix rule makes longer than 255 octets', () => {
    const long = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(50)].join('.');
    const m = mapperFromRules([{ from: 'novalocal', to: long, suffix: true }]);
    // 244 octets: fits.
    assert.equal(keyToWire(long).length, 244);
    const ok = renameMessage(reply({ questions: [{ type: 'A', name: 'novalocal' }] }), m);
    assert.ok(Buffer.isBuffer(ok));
    const wire = reply({ questions: [{ type: 'A', name: 'foo.novalocal' }], answers: [{ type: 'A', name: 'x'.repeat(20) + '.novalocal', ttl: 1, data: '10.0.0.1' }] });
    const out = renameMessage(wire, m);
    assert.equal(typeof out, 'string');
    assert.match(out as string, /not a name of at most 255 octets/);
  });

  it('refuses a reply that would grow past 65535 octets', () => {
    const longer = 'a-much-longer-suffix-for-every-target.prod.example.com';
    const m = mapperFromRules([{ from: 'novalocal', to: longer, suffix: true }]);
    const answers: Answer[] = [];
    for (let i = 0; i < 1300; i++) answers.push({ type: 'SRV', name: 'foo.novalocal', ttl: 1, data: { priority: 0, weight: 0, port: 1, target: `t${i}.novalocal` } });
    const wire = reply({ questions: [{ type: 'SRV', name: 'foo.novalocal' }], answers });
    assert.ok(wire.length < 65535);
    assert.match(renameMessage(wire, m) as string, /over 65535 octets/);
    // Fewer records fit.
    const fits = reply({ questions: [{ type: 'SRV', name: 'foo.novalocal' }], answers: answers.slice(0, 600) });
    const out = renameMessage(fits, m);
    assert.ok(Buffer.isBuffer(out));
    assert.equal(dnsPacket.decode(out).answers!.length, 600);
  });

  it('refuses malformed input: loops, forward and out-of-range pointers, truncated RDATA', () => {
    const q = question('foo.novalocal');
    const cases: Record<string, Buffer> = {
      'pointer to itself': Buffer.concat([header({ flags: 0x8180 }), Buffer.from([0xc0, 12]), u16(1), u16(1)]),
      'two pointers in a loop': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([1, 0x61, 0xc0, 33]), 1, 1, 1, Buffer.from([1, 2, 3, 4]))]),
      'pointer past the end': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([0xc0, 200]), 1, 1, 1, Buffer.from([1, 2, 3, 4]))]),
      'RDATA shorter than RDLENGTH': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([0xc0, 12]), 5, 1, 1, nameWire('x.novalocal'), 40)]),
      'CNAME name running past RDLENGTH': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([0xc0, 12]), 5, 1, 1, nameWire('x.novalocal'), 4), Buffer.alloc(9)]),
      'SRV RDATA without its target': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([0xc0, 12]), 33, 1, 1, Buffer.alloc(4))]),
      'HTTPS target past RDLENGTH': Buffer.concat([header({ flags: 0x8180, an: 1 }), q, rr(Buffer.from([0xc0, 12]), 65, 1, 1, Buffer.concat([u16(1), nameWire('x.novalocal')]), 5), Buffer.alloc(11)]),
      'truncated header': Buffer.from([0, 1, 0x81]),
      'count beyond the records': Buffer.concat([header({ flags: 0x8180, an: 2 }), q, rr(Buffer.from([0xc0, 12]), 1, 1, 1, Buffer.from([1, 2, 3, 4]))]),
    };
    for (const [what, wire] of Object.entries(cases)) {
      const out = renameMessage(wire, back);
      assert.equal(typeof out, 'string', what);
    }
  });
});

// Property tests: hostile octets never make the renamer throw or loop, and random well-formed
// replies come out as the model says, maximally compressed.
const pool = ['foo.novalocal', 'bar.novalocal', 'a.b.novalocal', 'novalocal', 'ns.novalocal', 'other.test', 'x.other.test', 'MiXed.Other.Test', '.'];
const nameArb = fc.constantFrom(...pool);
const ttlArb = fc.integer({ min: 0, max: 0x7fffffff });
const recordArb: fc.Arbitrary<Answer> = fc.oneof(
  fc.record({ type: fc.constant('A' as const), name: nameArb, ttl: ttlArb, data: fc.constant('192.0.2.1') }),
  fc.record({ type: fc.constantFrom('CNAME' as const, 'NS' as const, 'PTR' as const, 'DNAME' as const), name: nameArb, ttl: ttlArb, data: nameArb }),
  fc.record({ type: fc.constant('MX' as const), name: nameArb, ttl: ttlArb, data: fc.record({ preference: fc.integer({ min: 0, max: 65535 }), exchange: nameArb }) }),
  fc.record({ type: fc.constant('SRV' as const), name: nameArb, ttl: ttlArb, data: fc.record({ priority: fc.nat(65535), weight: fc.nat(65535), port: fc.nat(65535), target: nameArb }) }),
  fc.record({
    type: fc.constant('SOA' as const),
    name: nameArb,
    ttl: ttlArb,
    data: fc.record({ mname: nameArb, rname: nameArb, serial: fc.nat(), refresh: fc.nat(), retry: fc.nat(), expire: fc.nat(), minimum: fc.nat() }),
  }),
  fc.record({ type: fc.constant('TXT' as const), name: nameArb, ttl: ttlArb, data: fc.constant('foo.novalocal') }),
) as fc.Arbitrary<Answer>;
const packetArb: fc.Arbitrary<Packet> = fc
  .record({
    q: nameArb,
    flags: fc.integer({ min: 0, max: 0xffff }),
    answers: fc.array(recordArb, { maxLength: 6 }),
    authorities: fc.array(recordArb, { maxLength: 4 }),
    additionals: fc.array(recordArb, { maxLength: 4 }),
    edns: fc.boolean(),
  })
  .map(({ q, flags, answers, authorities, additionals, edns }) => ({
    type: 'response' as const,
    id: 7,
    // QR set, opcode 0: what scanMessage accepts as a reply.
    flags: (flags | 0x8000) & ~0x7800,
    questions: [{ type: 'A' as const, name: q, class: 'IN' as const }],
    answers,
    authorities,
    additionals: edns ? [...additionals, opt] : additionals,
  }));

/** Name positions in RDATA of class IN, as the renamer should see them: octets before, names. */
const RDATA_NAMES: Record<number, [number, number]> = { 2: [0, 1], 5: [0, 1], 12: [0, 1], 39: [0, 1], 15: [2, 1], 33: [6, 1], 6: [0, 2], 64: [2, 1], 65: [2, 1] };

/**
 * An independent reading of a message: every name the renamer must map (canonical form) and
 * every other octet of the records (TYPE, CLASS, TTL, RDATA outside names), in order.
 */
function reading(buf: Buffer): { names: string[]; rest: Buffer[] } {
  const scan = mustScan(buf);
  const names = [readName(buf, 12)!.name];
  const rest: Buffer[] = [buf.subarray(0, 12), buf.subarray(scan.questionEnd - 4, scan.questionEnd)];
  for (const r of scan.records) {
    if (r.type !== 41) names.push(readName(buf, r.start)!.name);
    rest.push(buf.subarray(r.ttlOffset - 4, r.ttlOffset + 4));
    const shape = r.klass === 1 ? RDATA_NAMES[r.type] : undefined;
    let o = r.rdStart;
    if (shape !== undefined) {
      rest.push(buf.subarray(o, o + shape[0]));
      o += shape[0];
      for (let i = 0; i < shape[1]; i++) {
        const n = readName(buf, o)!;
        names.push(n.name);
        o = n.end;
      }
    }
    rest.push(buf.subarray(o, r.rdStart + r.rdLength));
  }
  return { names, rest };
}

/** Renames `wire` with `back`: never throws, and what comes out reads as the model says. */
function renamesAsModel(wire: Buffer): Buffer | string {
  const out = renameMessage(wire, back);
  if (typeof out === 'string') return out;
  const before = reading(wire);
  const after = reading(out);
  assert.deepEqual(after.names, before.names.map((n) => back(n) ?? n));
  assert.deepEqual(after.rest, before.rest);
  return out;
}

function neverThrows(wire: Buffer): void {
  // Anything it returns scans (reading() checks) and reads as the model says.
  renamesAsModel(wire);
}

/** Renames every name to itself in capitals: a compressed reply full of pointers, same names. */
const shout: NameMapper = (n) => (n === '.' || n.toUpperCase() === n ? null : n.toUpperCase());

describe('renameMessage properties', () => {
  it('random replies: every name as the model maps it, compressed, counts kept', () => {
    fc.assert(
      fc.property(packetArb, (p) => {
        const wire = dnsPacket.encode(p);
        const out = renameMessage(wire, back);
        assert.ok(Buffer.isBuffer(out), String(out));
        const expected = dnsPacket.decode(dnsPacket.encode(mapDecoded(dnsPacket.decode(wire), back)));
        assert.deepEqual(dnsPacket.decode(out), expected);
        if (out === wire) return;
        checkCompression(out);
        assert.ok(out.length <= dnsPacket.encode(expected).length);
      }),
      { numRuns: 400 },
    );
  });

  it('compressed random replies, pointers everywhere: as the model says', () => {
    fc.assert(
      fc.property(packetArb, (p) => {
        const wire = renameMessage(dnsPacket.encode(p), shout);
        assert.ok(Buffer.isBuffer(wire), String(wire));
        const out = renamesAsModel(wire);
        assert.ok(Buffer.isBuffer(out), String(out));
        if (out !== wire) checkCompression(out);
      }),
      { numRuns: 400 },
    );
  });

  it('random octets never throw', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => neverThrows(Buffer.from(bytes))), { numRuns: 3000 });
  });

  it('replies with octets overwritten or cut never throw', () => {
    const edit = fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) });
    fc.assert(
      fc.property(packetArb, fc.array(edit, { minLength: 1, maxLength: 4 }), fc.nat(), fc.boolean(), (p, edits, cut, truncate) => {
        const shouted = renameMessage(dnsPacket.encode(p), shout);
        assert.ok(Buffer.isBuffer(shouted));
        const wire = Buffer.from(shouted);
        // Pointers are what hostile replies abuse: aim some edits at the high bits.
        for (const e of edits) wire[12 + (e.at % (wire.length - 12))] = e.value % 3 === 0 ? 0xc0 | (e.value & 0x3f) : e.value;
        neverThrows(truncate ? wire.subarray(0, cut % (wire.length + 1)) : wire);
      }),
      { numRuns: 3000 },
    );
  });
});
