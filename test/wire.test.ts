// Unit tests of the wire layer: the strict query parser, reply templates (ID, question spelling,
// TTL ageing, OPT), error replies and truncation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dnsPacket from 'dns-packet';
import { Rcode } from '../src/lib/dns/constants.js';
import { isRejection, parseQuery, type ParsedQuery } from '../src/lib/dns/query.js';
import { scanMessage } from '../src/lib/dns/message.js';
import { errorReply, renderTemplate, templateFromScan, truncateReply } from '../src/lib/dns/template.js';
import { buildQuery } from './helpers/client.js';

function parsed(buf: Buffer): ParsedQuery {
  const p = parseQuery(buf);
  assert.ok(!isRejection(p), `expected a query, got ${isRejection(p) ? p.reason : ''}`);
  return p;
}

function rejection(buf: Buffer) {
  const p = parseQuery(buf);
  assert.ok(isRejection(p), 'expected a rejection');
  return p;
}

test('parses header, question and OPT with DO and client subnet', () => {
  const q = parsed(
    buildQuery(
      { name: 'WwW.Example.COM', type: 'AAAA' },
      { id: 4242, edns: { udpSize: 4096, dnssecOk: true, options: [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: '10.1.2.0' } as dnsPacket.PacketOpt] } },
    ),
  );
  assert.equal(q.id, 4242);
  assert.equal(q.name, 'www.example.com');
  assert.equal(q.qtype, 28);
  assert.equal(q.edns?.udpSize, 4096);
  assert.equal(q.edns?.dnssecOk, true);
  assert.deepEqual([...q.edns!.ecs!.address], [10, 1, 2, 0]);
  assert.equal(q.edns!.ecs!.sourcePrefix, 24);
});

test('an EDNS payload size under 512 counts as 512', () => {
  assert.equal(parsed(buildQuery({ name: 'a.test' }, { edns: { udpSize: 100 } })).edns?.udpSize, 512);
});

test('drops what has no header or is a response', () => {
  assert.equal(rejection(Buffer.alloc(5)).action, 'drop');
  const resp = buildQuery({ name: 'a.test' });
  resp[2]! |= 0x80;
  assert.equal(rejection(resp).action, 'drop');
});

test('FORMERR for QDCOUNT 0 and 2, trailing bytes, bad labels and pointers', () => {
  const q = buildQuery({ name: 'a.test' });
  const zero = Buffer.from(q);
  zero.writeUInt16BE(0, 4);
  assert.equal(rejection(zero).rcode, Rcode.FORMERR);
  const two = Buffer.from(q);
  two.writeUInt16BE(2, 4);
  assert.equal(rejection(two).rcode, Rcode.FORMERR);
  assert.equal(rejection(Buffer.concat([q, Buffer.from([1, 2, 3])])).rcode, Rcode.FORMERR);
  // A compression pointer in the question (to the header) and a 64-octet label.
  const ptr = Buffer.concat([q.subarray(0, 12), Buffer.from([0xc0, 0x00, 0, 1, 0, 1])]);
  assert.equal(rejection(ptr).rcode, Rcode.FORMERR);
  const long = Buffer.concat([q.subarray(0, 12), Buffer.from([64]), Buffer.alloc(64, 0x61), Buffer.from([0, 0, 1, 0, 1])]);
  assert.equal(rejection(long).rcode, Rcode.FORMERR);
});

test('a query with TC set is a query like any other (genreport tc), not FORMERR', () => {
  const tc = buildQuery({ name: 'a.test' });
  tc[2]! |= 0x02;
  assert.equal(parsed(tc).name, 'a.test');
});

test('FORMERR and NOTIMP replies carry no RA and no CD; REFUSED and SERVFAIL keep both', () => {
  const q = buildQuery({ name: 'a.test' }, { flags: 0x0100 | 0x0010 | 0x0040 | 0x0020 | 0x0400 });
  const p = parsed(q);
  for (const rcode of [Rcode.FORMERR, Rcode.NOTIMP]) {
    const flags = errorReply(q, p.id, p.flags | 0x7800, rcode, p.questionEnd, null).readUInt16BE(2);
    assert.equal(flags & 0x0080, 0, `RA clear for rcode ${rcode}`);
    assert.equal(flags & 0x0010, 0, `CD clear for rcode ${rcode}`);
    assert.equal(flags & (0x0400 | 0x0040 | 0x0020), 0, 'AA, Z and AD never echoed');
    assert.equal(flags & 0x7900, 0x7900, 'opcode and RD echoed');
  }
  for (const rcode of [Rcode.REFUSED, Rcode.SERVFAIL]) {
    const flags = errorReply(q, p.id, p.flags, rcode, p.questionEnd, null).readUInt16BE(2);
    assert.equal(flags & 0x0090, 0x0090, `RA and CD for rcode ${rcode}`);
  }
});

test('a name over 255 octets is FORMERR', () => {
  const labels: Buffer[] = [];
  for (let i = 0; i < 5; i++) labels.push(Buffer.from([63]), Buffer.alloc(63, 0x61));
  const q = Buffer.concat([buildQuery({ name: 'x' }).subarray(0, 12), ...labels, Buffer.from([0, 0, 1, 0, 1])]);
  assert.equal(rejection(q).rcode, Rcode.FORMERR);
});

test('NOTIMP for another opcode, echoed; BADVERS for EDNS version 1', () => {
  const q = buildQuery({ name: 'a.test' });
  q[2]! |= 5 << 3; // opcode 5 (UPDATE)
  const r = rejection(q);
  assert.equal(r.rcode, Rcode.NOTIMP);
  const reply = errorReply(q, r.id, r.flags, r.rcode, r.questionEnd, null);
  assert.equal((reply[2]! >> 3) & 0xf, 5);
  assert.equal(reply[3]! & 0xf, Rcode.NOTIMP);

  const v1 = buildQuery({ name: 'a.test' }, { edns: {} });
  v1[v1.length - 5] = 1; // OPT TTL octet 2: the version
  const b = rejection(v1);
  assert.equal(b.rcode, Rcode.BADVERS);
  const br = errorReply(v1, b.id, b.flags, b.rcode, b.questionEnd, { dnssecOk: false });
  const opt = br.subarray(br.length - 11);
  assert.equal(br[3]! & 0xf, 0);
  assert.equal(opt[5], 1, 'extended rcode 1 (BADVERS = 16)');
  assert.equal(opt[6], 0, 'OPT version 0');
});

test('two OPT records, an OPT not owned by the root, bad ECS: FORMERR', () => {
  const one = buildQuery({ name: 'a.test' }, { edns: {} });
  const opt = one.subarray(one.length - 11);
  const two = Buffer.concat([one, opt]);
  two.writeUInt16BE(2, 10);
  assert.equal(rejection(two).rcode, Rcode.FORMERR);
  const owned = Buffer.concat([one.subarray(0, one.length - 11), Buffer.from([1, 0x61, 0]), opt.subarray(1)]);
  assert.equal(rejection(owned).rcode, Rcode.FORMERR);
  // ECS family 1 with prefix 33.
  const ecs = Buffer.from([0, 8, 0, 9, 0, 1, 33, 0, 10, 0, 0, 0, 0]);
  const bad = Buffer.concat([one.subarray(0, one.length - 2), Buffer.from([0, ecs.length]), ecs]);
  assert.equal(rejection(bad).rcode, Rcode.FORMERR);
});

function upstreamReply(name: string, ttl: number): Buffer {
  return dnsPacket.encode({
    type: 'response',
    id: 999,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name, type: 'A', class: 'IN' }],
    answers: [
      { name, type: 'A', ttl, data: '192.0.2.1' },
      { name, type: 'A', ttl: ttl + 10, data: '192.0.2.2' },
    ],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as unknown as dnsPacket.Answer],
  });
}

test('a template is stamped with the client ID, spelling, aged TTLs and its own EDNS state', () => {
  const scan = scanMessage(upstreamReply('host.example', 300));
  assert.ok(typeof scan !== 'string');
  const t = templateFromScan(upstreamReply('host.example', 300), scan, false);
  assert.equal(t.buf.readUInt16BE(10), 0, 'OPT removed from the template');

  const raw = buildQuery({ name: 'HoSt.ExAmPlE' }, { id: 7 });
  const out = dnsPacket.decode(renderTemplate(t, raw, parsed(raw), 100));
  assert.equal(out.id, 7);
  assert.equal(out.questions![0]!.name, 'HoSt.ExAmPlE');
  assert.deepEqual(out.answers!.map((a) => (a as { ttl: number }).ttl), [200, 210]);
  assert.equal(out.additionals!.length, 0, 'no OPT for a client without EDNS');

  const rawE = buildQuery({ name: 'host.example' }, { id: 8, edns: { dnssecOk: true } });
  const withOpt = dnsPacket.decode(renderTemplate(t, rawE, parsed(rawE), 400));
  assert.deepEqual(withOpt.answers!.map((a) => (a as { ttl: number }).ttl), [0, 0], 'TTLs never go below zero');
  const opt = withOpt.additionals![0] as unknown as { type: string; flag_do: boolean; udpPayloadSize: number };
  assert.equal(opt.type, 'OPT');
  assert.equal(opt.flag_do, true);
});

test('a TTL with the top bit set becomes 0 (RFC 2181 section 8)', () => {
  const wire = upstreamReply('big.example', 2 ** 31 + 1 - 10);
  const scan = scanMessage(wire);
  assert.ok(typeof scan !== 'string');
  const t = templateFromScan(wire, scan, false);
  const raw = buildQuery({ name: 'big.example' });
  const out = dnsPacket.decode(renderTemplate(t, raw, parsed(raw), 0));
  assert.equal((out.answers![1] as { ttl: number }).ttl, 0);
});

test('scanMessage refuses RDLENGTH overruns, A records of the wrong size and trailing bytes', () => {
  const good = upstreamReply('x.example', 60);
  assert.ok(typeof scanMessage(good) !== 'string');
  assert.equal(typeof scanMessage(Buffer.concat([good, Buffer.from([0])])), 'string');
  const short = Buffer.from(good);
  // First answer's RDLENGTH: question ends at 12 + 11 + 4 = 27; owner 10 octets; RDLENGTH at +8.
  short.writeUInt16BE(2, 27 + 10 + 8);
  assert.equal(typeof scanMessage(short), 'string');
});

test('truncation keeps header and question, sets TC, and keeps an OPT for EDNS clients', () => {
  const raw = buildQuery({ name: 'x.example' }, { edns: {} });
  const q = parsed(raw);
  const scan = scanMessage(upstreamReply('x.example', 60));
  assert.ok(typeof scan !== 'string');
  const reply = renderTemplate(templateFromScan(upstreamReply('x.example', 60), scan, false), raw, q, 0);
  const tc = dnsPacket.decode(truncateReply(reply, q.questionEnd, q.edns));
  assert.equal(tc.flag_tc, true);
  assert.equal(tc.answers!.length, 0);
  assert.equal(tc.questions![0]!.name, 'x.example');
  assert.equal(tc.additionals![0]!.type, 'OPT');
});
