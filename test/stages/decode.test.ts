// The decode stage through real sockets: each kind of rejection gets its rcode on the wire and
// its own counter, nothing rejected reaches the upstream, and the loader's rules for its entry.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/app/config.js';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { Rcode } from '../../src/lib/dns/constants.js';
import { tcpExchange, udpExchange } from '../helpers/client.js';
import { header, mustParse, OPCODE_MASK, QR, RA, question, rawQuery, RD } from '../helpers/packets.js';
import { bounded, startLineDns, writeConfig, type Running } from '../helpers/server.js';
import { simpleHandler, TestUpstream } from '../helpers/upstream.js';

const COUNTERS = ['decode_dropped_total', 'decode_formerr_total', 'decode_notimp_total', 'decode_badvers_total', 'decode_refused_transfer_total', 'decode_refused_class_total'];

describe('decode: rejections on the wire, each counted by its reason', { timeout: 30_000 }, () => {
  let up: TestUpstream;
  let ld: Running;
  let seen: Record<string, number>;

  before(async () => {
    up = await TestUpstream.start(simpleHandler());
    ld = await startLineDns({ config: { upstreams: [up.address], pipeline: ['decode', 'forward'], forward: { timeout: 500, deadline: 1000 } } });
    seen = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
  });
  after(async () => {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the upstream');
  });

  /** Asserts that exactly `name` moved (by one) since the last call, and that nothing went upstream. */
  function counted(name: string | null): void {
    for (const c of COUNTERS) {
      const expected = seen[c]! + (c === name ? 1 : 0);
      assert.equal(ld.server.metrics.get(c), expected, c);
      seen[c] = expected;
    }
    assert.equal(up.requests.length, 0, 'a rejected query is never forwarded');
  }

  test('QDCOUNT 2: FORMERR without RA, the ID kept', async () => {
    const msg = Buffer.concat([header({ id: 0x1234, qd: 2 }), question('a.test'), question('b.test')]);
    const r = mustParse(await udpExchange(ld.port, msg));
    assert.equal(r.id, 0x1234);
    assert.equal(r.rcode, Rcode.FORMERR);
    assert.equal(r.flags & RA, 0, 'no RA on a message not understood');
    counted('decode_formerr_total');
  });

  test('trailing octets after a readable question: FORMERR with the question echoed', async () => {
    const r = mustParse(await udpExchange(ld.port, Buffer.concat([rawQuery('a.test', 1, { id: 0x1235 }), Buffer.from([0])])));
    assert.equal(r.rcode, Rcode.FORMERR);
    assert.equal(r.qname, 'a.test');
    counted('decode_formerr_total');
  });

  test('opcode STATUS: NOTIMP, header only, the opcode echoed, no RA', async () => {
    const r = mustParse(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 7, flags: RD | (2 << 11) })));
    assert.equal(r.rcode, Rcode.NOTIMP);
    assert.equal((r.flags & OPCODE_MASK) >> 11, 2);
    assert.equal(r.flags & RA, 0);
    assert.equal(r.qdcount, 0, 'a message of an unknown opcode is not read past its header');
    counted('decode_notimp_total');
  });

  test('EDNS version 1: BADVERS (16) in an OPT of version 0', async () => {
    const r = mustParse(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 8, opt: { version: 1 } })));
    assert.equal(r.rcode, 16);
    assert.ok(r.opt, 'the reply carries an OPT');
    assert.equal((r.opt.ttl >>> 16) & 0xff, 0, 'OPT version 0');
    counted('decode_badvers_total');
  });

  test('AXFR over TCP and IXFR over UDP: REFUSED at once', async () => {
    const [axfr] = await tcpExchange(ld.port, [rawQuery('zone.test', 252, { id: 9 })]);
    assert.equal(mustParse(axfr ?? null).rcode, Rcode.REFUSED);
    counted('decode_refused_transfer_total');
    assert.equal(mustParse(await udpExchange(ld.port, rawQuery('zone.test', 251, { id: 10 }))).rcode, Rcode.REFUSED);
    counted('decode_refused_transfer_total');
  });

  test('class HS: REFUSED at once, the class echoed', async () => {
    const r = mustParse(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 11, klass: 4 })));
    assert.equal(r.rcode, Rcode.REFUSED);
    assert.equal(r.qclass, 4);
    counted('decode_refused_class_total');
  });

  test('QR set, or less than a header: dropped without a reply', async () => {
    assert.equal(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 12, flags: QR | RD }), { timeoutMs: 300 }), null);
    counted('decode_dropped_total');
    assert.equal(await udpExchange(ld.port, Buffer.alloc(11), { timeoutMs: 300 }), null);
    counted('decode_dropped_total');
  });

  test('classes CH and ANY pass to the next stage (forwarded), counted nowhere', async () => {
    const ch = mustParse(await udpExchange(ld.port, rawQuery('version.bind', 16, { id: 13, klass: 3 })));
    assert.equal(ch.rcode, Rcode.NOERROR);
    const any = mustParse(await udpExchange(ld.port, rawQuery('a.test', 1, { id: 14, klass: 255 })));
    assert.equal(any.rcode, Rcode.NOERROR);
    assert.deepEqual(
      up.requests.map((r) => r.packet.questions?.[0]?.class),
      ['CH', 'ANY'],
    );
    up.requests.length = 0;
    counted(null);
  });
});

function errorsOf(config: Record<string, unknown>): string[] {
  try {
    loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], ...config } }).configFile);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues.filter((i) => i.severity === 'error').map((i) => formatIssue(i).replace(/^.*linedns\.json:/, ''));
  }
  assert.fail('the config was accepted');
}

test('decode takes no options: an object on its entry is refused where it is written', () => {
  const errors = errorsOf({ pipeline: [{ decode: { strict: true } }, 'forward'] });
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.match(errors[0]!, /\$\.pipeline\[0\]\.decode\.strict: unknown property "strict"/);
});

test('a pipeline without decode: each built-in stage that reads the question says it needs "decode"', () => {
  const errors = errorsOf({ pipeline: ['acl', 'forward'] });
  assert.equal(errors.length, 2, errors.join('\n'));
  assert.match(errors[0]!, /\$\.pipeline\[0\]: "acl" needs "query" from a stage before it: a refusal echoes the decoded question; expected "decode" before "acl"/);
  assert.match(errors[1]!, /\$\.pipeline\[1\]: "forward" needs "query" from a stage before it: it forwards the decoded question; expected "decode" before "forward"/);
});
