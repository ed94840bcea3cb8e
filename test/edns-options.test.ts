// Appending EDNS options to the OPT linedns writes last (src/lib/dns/edns-options.ts): Extended DNS
// Errors and Client Subnet through the one mechanism, on bare and non-bare OPTs, and replies without one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EdeCode, withEdeOption } from '../src/lib/dns/edns-options.js';
import { withEcsOption } from '../src/lib/dns/ecs.js';
import { ecsOption, ednsOption, ipv4, mustParse, optRecord, QNAME_PTR, rawQuery, replyTo, rr, u16 } from './helpers/packets.js';

const query = rawQuery('ede.example', 1, { id: 9 });
const answer = rr(QNAME_PTR, 1, 1, 30, ipv4('192.0.2.1'));

test('EDE 3 goes into a bare OPT that ends the reply: RDLENGTH grown, records intact', () => {
  const reply = replyTo(query, { answers: [answer], additional: [optRecord()] });
  const out = withEdeOption(reply, EdeCode.STALE_ANSWER);
  const m = mustParse(out);
  assert.deepEqual(m.opt?.rdata, Buffer.concat([u16(15), u16(2), u16(3)]));
  assert.equal(m.records.filter((r) => r.type === 1).length, 1);
  assert.deepEqual(out.subarray(0, reply.length - 2), reply.subarray(0, reply.length - 2), 'only the RDLENGTH changed before the option');
});

test('an OPT already carrying options keeps them, the EDE after them (found by a scan)', () => {
  const before = ecsOption(1, 24, 0, [10, 1, 2]);
  const reply = replyTo(query, { answers: [answer], additional: [optRecord({ options: [before] })] });
  const m = mustParse(withEdeOption(reply, EdeCode.NO_REACHABLE_AUTHORITY));
  assert.deepEqual(m.opt?.rdata, Buffer.concat([before, ednsOption(15, u16(22))]));
});

test('a reply without an OPT, or with one that is not its last record, is returned as it is', () => {
  const plain = replyTo(query, { answers: [answer] });
  assert.equal(withEdeOption(plain, EdeCode.STALE_ANSWER), plain);
  const optFirst = replyTo(query, { additional: [optRecord(), rr(QNAME_PTR, 1, 1, 30, ipv4('192.0.2.9'))] });
  assert.equal(withEdeOption(optFirst, EdeCode.STALE_ANSWER), optFirst);
});

test('EDE then ECS, as the reply hooks run them (the cache\'s inner, decode\'s outermost): both on the one OPT', () => {
  const reply = replyTo(query, { answers: [answer], additional: [optRecord()] });
  const both = withEcsOption(withEdeOption(reply, EdeCode.STALE_ANSWER), { family: 1, sourcePrefix: 24, scopePrefix: 0, address: new Uint8Array([10, 1, 2]) }, 0);
  const m = mustParse(both);
  assert.deepEqual(m.opt?.rdata, Buffer.concat([ednsOption(15, u16(3)), ecsOption(1, 24, 0, [10, 1, 2])]));
});
