// Names as octets: local answers for names with octets that need escaping (>= 0x80, '.', '\\',
// 0x00, UTF-8) are valid DNS, echo the question, keep the client's spelling, and match config.

import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { keyToWire, normalizeName, parentName, readName } from '../src/lib/dns/name.js';
import { RecordStore } from '../src/stages/records/store.js';
import { udpExchange } from './helpers/client.js';
import { labelsWire, mustParse, header, nameWire } from './helpers/packets.js';
import { startLineDns, type Running } from './helpers/server.js';
import { NAME_RECORDS } from './helpers/name-records.js';


function queryFor(labels: readonly Uint8Array[], type = 1): Buffer {
  return Buffer.concat([header({ id: 0x1234, flags: 0x0100 }), labelsWire(labels), Buffer.from([type >> 8, type & 0xff, 0, 1])]);
}

const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');

/** The question section of a message: octets 12 to the end of QCLASS. */
function questionOf(msg: Buffer): Buffer {
  const n = readName(msg, 12, false);
  assert.ok(n);
  return msg.subarray(12, n.end + 4);
}

test('keyToWire is the inverse of readName for every octet', () => {
  for (let b = 0; b < 256; b++) {
    const wire = labelsWire([Buffer.from([b, 0x2e, b]), ascii('test')]);
    const n = readName(wire, 0, false);
    assert.ok(n);
    const lower = Buffer.from(wire);
    for (let i = 0; i < lower.length; i++) if (lower[i]! >= 0x41 && lower[i]! <= 0x5a) lower[i] = lower[i]! | 0x20;
    assert.deepEqual(keyToWire(n.name), lower, `octet ${b}`);
  }
});

test('parentName steps over escaped dots; normalizeName escapes UTF-8 as readName does', () => {
  assert.equal(parentName('a\\.b.c'), 'c');
  assert.equal(parentName('\\092.c'), 'c');
  const wire = labelsWire([Buffer.from('É', 'utf8'), ascii('Test')]);
  assert.equal(normalizeName('É.Test.'), readName(wire, 0, false)!.name);
  // Only ASCII folds: "É" and "é" are different octets on the wire.
  assert.notEqual(normalizeName('É.test'), normalizeName('é.test'));
});

test('the store finds UTF-8 owners, wildcards and actions by the query\'s key', () => {
  const s = new RecordStore(NAME_RECORDS);
  const all = { lines: null, unmatched: 'all' as const };
  const key = (labels: Uint8Array[]): string => readName(labelsWire(labels), 0, false)!.name;
  assert.equal(s.lookup(key([Buffer.from('é', 'utf8'), ascii('local'), ascii('test')]), 1, all).kind, 'answer');
  const wild = s.lookup(key([Buffer.from([0xff]), ascii('wild'), ascii('test')]), 1, all);
  assert.equal(wild.kind, 'answer');
  assert.equal(s.lookup(key([Buffer.from([0x2e]), ascii('deny'), ascii('test')]), 1, all).kind, 'action');
});

describe('local replies for names that need escaping', () => {
  let ld: Running;
  before(async () => {
    // Port 9 (discard): nothing answers, so anything not answered locally would be SERVFAIL late.
    ld = await startLineDns({ config: { upstreams: ['127.0.0.1:9'], forward: { timeout: 2000, deadline: 2000 } }, records: NAME_RECORDS });
  });
  after(async () => ld?.close());

  async function ask(q: Buffer): Promise<{ reply: Buffer; ms: number }> {
    const t = Date.now();
    const reply = await udpExchange(ld.port, q, { timeoutMs: 3000 });
    assert.ok(reply, 'a reply');
    return { reply, ms: Date.now() - t };
  }

  it('the fuzzer\'s case: \\128 under a local zone gets a valid NXDOMAIN, no stray octets', async () => {
    const q = Buffer.from('1234010000010000000000000180056c6f63616c04746573740000010001', 'hex');
    const { reply } = await ask(q);
    const m = mustParse(reply);
    assert.equal(m.rcode, 3);
    assert.deepEqual(questionOf(reply), q.subarray(12));
    assert.equal(m.records.length, 1);
    assert.equal(m.records[0]!.owner, 'local.test');
    assert.doesNotThrow(() => dnsPacket.decode(reply));
  });

  for (const [what, octets] of [['0x80', [0x80]], ['a dot', [0x2e]], ['a backslash', [0x5c]], ['0x00', [0x00]], ['UTF-8 é', [0xc3, 0xa9, 0x78]]] as const) {
    it(`NXDOMAIN and NODATA for a label with ${what} are valid and echo the question`, async () => {
      for (const type of [1, 16]) {
        const q = queryFor([Buffer.from(octets), ascii('local'), ascii('test')], type);
        const { reply } = await ask(q);
        const m = mustParse(reply);
        assert.equal(m.rcode, 3);
        assert.deepEqual(questionOf(reply), q.subarray(12));
      }
      const nodata = queryFor([Buffer.from(octets), ascii('wild'), ascii('test')], 16);
      const { reply } = await ask(nodata);
      assert.deepEqual(questionOf(reply), nodata.subarray(12));
      mustParse(reply);
    });
  }

  it('wildcard, deny and nxdomain entries answer such names at once, not SERVFAIL', async () => {
    const cases: [string, number][] = [['wild', 0], ['deny', 5], ['nx', 3]];
    for (const [zone, rcode] of cases) {
      for (const octet of [0xff, 0x2e, 0x5c, 0x00]) {
        const q = queryFor([Buffer.from([octet]), ascii(zone), ascii('test')]);
        const { reply, ms } = await ask(q);
        const m = mustParse(reply);
        assert.equal(m.rcode, rcode, `${zone} with octet ${octet}`);
        assert.ok(ms < 1000, `answered in ${ms} ms`);
        assert.deepEqual(questionOf(reply), q.subarray(12));
        if (zone === 'wild') {
          assert.equal(m.records.length, 1);
          // The synthesised owner is the question, octet for octet.
          const ownerAt = reply.indexOf(Buffer.from([0xc0, 0x0c]), q.length);
          assert.equal(ownerAt, q.length, 'owner points at the question');
        }
      }
    }
  });

  it('an owner equal to the question keeps the client\'s spelling; other owners are config\'s', async () => {
    const q = Buffer.concat([header({ id: 7, flags: 0x0100 }), nameWire('ALIAS.Local.TEST'), Buffer.from([0, 1, 0, 1])]);
    const { reply } = await ask(q);
    const d = dnsPacket.decode(reply);
    assert.deepEqual(d.answers!.map((a) => a.name), ['ALIAS.Local.TEST', 'host.local.test']);
    const again = Buffer.concat([header({ id: 8, flags: 0x0100 }), nameWire('alias.LOCAL.test'), Buffer.from([0, 1, 0, 1])]);
    assert.deepEqual(dnsPacket.decode((await ask(again)).reply).answers!.map((a) => a.name), ['alias.LOCAL.test', 'host.local.test']);
  });

  it('a UTF-8 name in records.json answers the same octets on the wire, CNAME targets too', async () => {
    const { reply } = await ask(queryFor([Buffer.from('é', 'utf8'), ascii('local'), ascii('test')]));
    const m = mustParse(reply);
    assert.equal(m.rcode, 0);
    assert.equal(m.records.length, 1);
    const viaCname = mustParse((await ask(queryFor([ascii('utf'), ascii('local'), ascii('test')]))).reply);
    assert.deepEqual(viaCname.records.map((r) => r.owner), ['utf.local.test', '\\195\\169.local.test']);
    assert.deepEqual([...viaCname.records[1]!.rdata], [192, 0, 2, 3]);
  });
});
