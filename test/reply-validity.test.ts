// Property: for any question the decoder accepts, every kind of reply linedns produces parses
// strictly (dns-packet and test/helpers/packets.ts's checker) and echoes the question's octets.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { isRejection, parseQuery } from '../src/lib/dns/query.js';
import { udpExchange } from './helpers/client.js';
import { checkMessage, header, ipv4, labelsWire, optRecord, QNAME_PTR, questionEndOf, replyTo, rr, soaRdata } from './helpers/packets.js';
import { startLineDns, type Running } from './helpers/server.js';
import { TestUpstream } from './helpers/upstream.js';
import { NAME_RECORDS } from './helpers/name-records.js';

/** Samples per run and a wall-clock cap: the property must finish in a few seconds. */
const RUNS = 500;
const BUDGET_MS = 15_000;

/**
 * The upstream answers from the query's own octets: SERVFAIL under fail.test (linedns has no
 * other upstream, so the client gets SERVFAIL), NXDOMAIN under nxf.test, an A record for A
 * questions, NODATA with an SOA otherwise; AA always, as an authority would.
 */
function upstreamAnswer(raw: Buffer): Buffer | null {
  const qEnd = questionEndOf(raw);
  if (qEnd < 0) return null;
  const q = raw.subarray(0, qEnd);
  const lower = Buffer.from(q.subarray(12)).toString('latin1').toLowerCase();
  const flags = 0x8000 | 0x0400 | 0x0080 | (raw.readUInt16BE(2) & 0x0110);
  const soa = rr(labelsWire([Buffer.from('test')]), 6, 1, 60, soaRdata('ns.test', 'h.test', 60));
  if (lower.includes('\x04fail\x04test\x00')) return replyTo(q, { flags: flags | 2 });
  if (lower.includes('\x03nxf\x04test\x00')) return replyTo(q, { flags: flags | 3, authority: [soa] });
  if (raw.readUInt16BE(qEnd - 4) === 1) return replyTo(q, { flags, answers: [rr(QNAME_PTR, 1, 1, 60, ipv4('192.0.2.7'))] });
  return replyTo(q, { flags, authority: [soa] });
}

const SUFFIXES = ['local.test', 'host.local.test', 'alias.local.test', 'wild.test', 'deny.test', 'nx.test', 'fwd.test', 'fail.test', 'nxf.test'];

/** An ASCII-case mix of a suffix, so the same name comes spelled in several ways. */
const suffix = fc.tuple(fc.constantFrom(...SUFFIXES), fc.array(fc.boolean(), { minLength: 20, maxLength: 20 })).map(([s, up]) =>
  s.split('.').map((l) => Buffer.from([...l].map((c, i) => (up[i % 20] ? c.toUpperCase() : c)).join(''), 'latin1')),
);
/** Labels of any octets, weighted towards the ones that need escaping. */
const hostileOctet = fc.oneof(fc.constantFrom(0x00, 0x2e, 0x5c, 0x80, 0xff, 0x20, 0x41, 0xc3, 0xa9), fc.integer({ min: 0, max: 255 }));
const label = fc.array(hostileOctet, { minLength: 1, maxLength: 20 }).map((a) => Buffer.from(a));
const queryArb = fc.record({
  prefix: fc.array(label, { minLength: 0, maxLength: 3 }),
  suffix,
  qtype: fc.oneof(fc.constantFrom(1, 28, 16, 6, 5, 15, 255, 666), fc.integer({ min: 1, max: 300 }).filter((t) => t !== 41 && t !== 251 && t !== 252)),
  klass: fc.oneof(fc.constant(1), fc.constant(1), fc.constantFrom(3, 255, 4660)),
  flags: fc.record({ rd: fc.boolean(), cd: fc.boolean(), tc: fc.boolean(), ad: fc.boolean() }),
  edns: fc.option(fc.record({ udpSize: fc.constantFrom(512, 1232, 4096), dnssecOk: fc.boolean(), version: fc.constantFrom(0, 0, 0, 1) })),
  id: fc.integer({ min: 0, max: 0xffff }),
});
type QuerySpec = typeof queryArb extends fc.Arbitrary<infer T> ? T : never;

function build(s: QuerySpec, flipCase: boolean): Buffer {
  let name = labelsWire([...s.prefix, ...s.suffix]);
  if (flipCase) name = Buffer.from(name.map((b) => ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ? b ^ 0x20 : b)));
  const flags = (s.flags.rd ? 0x0100 : 0) | (s.flags.cd ? 0x0010 : 0) | (s.flags.tc ? 0x0200 : 0) | (s.flags.ad ? 0x0020 : 0);
  const parts = [header({ id: s.id, flags, ar: s.edns ? 1 : 0 }), name, Buffer.from([s.qtype >> 8, s.qtype & 0xff, s.klass >> 8, s.klass & 0xff])];
  if (s.edns) parts.push(optRecord({ udpSize: s.edns.udpSize, version: s.edns.version, flags: s.edns.dnssecOk ? 0x8000 : 0 }));
  return Buffer.concat(parts);
}

/** What kind of reply this is, for the coverage check at the end. */
function kind(reply: Buffer, s: QuerySpec): string {
  const flags = reply.readUInt16BE(2);
  const rcode = flags & 0xf;
  const an = reply.readUInt16BE(6);
  const zone = s.suffix.map((b) => b.toString('latin1').toLowerCase()).join('.');
  if (rcode === 0 && s.edns?.version === 1) return 'badvers';
  if (reply.readUInt16BE(10) > 0 && s.edns?.version === 1) return 'badvers';
  if (flags & 0x0200) return 'truncated';
  if (rcode === 5) return s.klass === 1 || s.klass === 3 || s.klass === 255 ? 'deny' : 'refused-class';
  if (rcode === 2) return 'servfail';
  if (flags & 0x0400) {
    if (zone === 'wild.test' && an > 0) return 'wildcard';
    if (rcode === 3) return 'local-nxdomain';
    return an > 0 ? 'local-answer' : 'local-nodata';
  }
  if (rcode === 3) return 'forward-nxdomain';
  return an > 0 ? 'forward-answer' : 'forward-nodata';
}

describe('every reply is valid DNS and echoes the question', { timeout: BUDGET_MS + 20_000 }, () => {
  let up: TestUpstream;
  let ld: Running;
  before(async () => {
    up = await TestUpstream.start(({ raw }) => upstreamAnswer(raw));
    ld = await startLineDns({ config: { upstreams: [up.address], forward: { timeout: 1000, deadline: 1000 } }, records: NAME_RECORDS });
  });
  after(async () => {
    await ld?.close();
    await up?.close();
  });

  it(`property: ${RUNS} hostile questions, each asked twice (the second from the cache or memo)`, async () => {
    const seen = new Map<string, number>();
    const started = Date.now();
    let asked = 0;
    await fc.assert(
      fc.asyncProperty(queryArb, async (s) => {
        const first = build(s, false);
        if (first.length - 12 - 4 > 255 + (s.edns ? 11 : 0)) return; // labelsWire does not cap the name
        // Questions the decoder accepts: queries, and rejections (BADVERS) that echo the question.
        const p = parseQuery(first);
        if (isRejection(p) && (p.action === 'drop' || p.questionEnd === 0)) return;
        for (const q of [first, build(s, true)]) {
          if (Date.now() - started > BUDGET_MS) return;
          asked++;
          const reply = await udpExchange(ld.port, q, { timeoutMs: 2000 });
          assert.ok(reply, `no reply to ${q.toString('hex')}`);
          const m = checkMessage(reply);
          assert.ok(typeof m !== 'string', `strict parser: ${String(m)} in ${reply.toString('hex')} for ${q.toString('hex')}`);
          assert.doesNotThrow(() => dnsPacket.decode(reply), `dns-packet on ${reply.toString('hex')}`);
          assert.equal(m.id, s.id);
          assert.equal(m.qdcount, 1);
          assert.deepEqual(reply.subarray(12, p.questionEnd), q.subarray(12, p.questionEnd), 'question echoed octet for octet');
          const k = kind(reply, s);
          seen.set(k, (seen.get(k) ?? 0) + 1);
        }
      }),
      { numRuns: RUNS, seed: 20261202, endOnFailure: true },
    );
    const metrics = ld.server.metrics.snapshot();
    assert.ok(asked > 100, `only ${asked} queries asked in ${BUDGET_MS} ms`);
    assert.ok((metrics.cache_hits_total ?? 0) > 0, 'some replies came from the cache');
    assert.ok((metrics.records_answered_total ?? 0) > 0, 'some replies came from local data');
    for (const k of ['local-answer', 'local-nodata', 'local-nxdomain', 'wildcard', 'deny', 'forward-answer', 'forward-nodata', 'forward-nxdomain', 'servfail', 'badvers', 'refused-class']) {
      assert.ok((seen.get(k) ?? 0) > 0, `no ${k} reply among ${JSON.stringify(Object.fromEntries(seen))}`);
    }
  });
});
