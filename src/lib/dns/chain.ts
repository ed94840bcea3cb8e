// Joins a CNAME chain a stage answered from its own data to the reply the rest of the pipeline
// gave for the chain's target, on the wire: one reply for the client's question (RFC 1034 3.6.2).

import { Flag, HEADER_SIZE, QType, Rcode, RCODE_MASK } from './constants.js';
import { rebuildMessage, scanMessage, Section } from './message.js';
import { cnameChain } from './scrub.js';
import { templateFromScan, templateTtl, type ScannedTemplate, type WireTemplate } from './template.js';

/** The largest DNS message (TCP length prefix). */
const MAX_MESSAGE = 0xffff;

/**
 * The query `raw` asking for another name: its header, QTYPE, QCLASS and additional section
 * (OPT, client subnet) kept, the QNAME replaced by `nameWire` (uncompressed wire octets).
 * `questionEnd` is the end of `raw`'s question.
 */
export function withQuestionName(raw: Uint8Array, questionEnd: number, nameWire: Uint8Array): Buffer {
  return Buffer.concat([raw.subarray(0, HEADER_SIZE), nameWire, raw.subarray(questionEnd - 4)]);
}

export type Joined =
  | { readonly ok: true; readonly template: ScannedTemplate }
  /** No answer to join: reply with `rcode` and no records (the target's own error, or SERVFAIL). */
  | { readonly ok: false; readonly rcode: number; readonly reason: string };

/**
 * One reply: the question and answer records of `head` (a CNAME chain from QNAME, names
 * uncompressed or pointers to the question, no other section), then every record of `tail`
 * (the reply for the chain's last target: its CNAMEs, final records, authority, additional),
 * with the tail's RCODE, as RFC 6604 asks: the final name's. The tail's names are written out
 * whole (its pointers aimed at its own question). Every answer record carries the chain's
 * minimum TTL, the tail's SOA negative TTL included when the tail has no answer (no SOA: 0),
 * so whoever caches the join (a client, or the cache as an aged upstream answer) keeps it no
 * longer than its shortest-lived part. AA and AD are clear: the tail is not our data, and the
 * head was not validated. A chain through the join that loops or has more than
 * MAX_CNAME_CHAIN links is SERVFAIL, as an upstream reply with such a chain would be (Unbound).
 * `qname` is the canonical name of the question.
 */
export function joinChain(head: WireTemplate, tail: Uint8Array, qname: string): Joined {
  const scan = scanMessage(tail);
  if (typeof scan === 'string') return { ok: false, rcode: Rcode.SERVFAIL, reason: `the target's reply is malformed: ${scan}` };
  if (scan.flags & Flag.TC) return { ok: false, rcode: Rcode.SERVFAIL, reason: "the target's reply is truncated" };
  if (scan.rcode !== Rcode.NOERROR && scan.rcode !== Rcode.NXDOMAIN) return { ok: false, rcode: scan.rcode, reason: `the target's reply has rcode ${scan.rcode}` };
  const h = head.buf;
  if (h.readUInt16BE(8) !== 0 || h.readUInt16BE(10) !== 0) throw new Error('joinChain: the head holds records outside the answer section');
  // Names written out whole, OPT left out (the client's own is added when rendered).
  const records = rebuildMessage(tail, scan, scan.records.map((r) => r.type !== QType.OPT));
  const rest = scanMessage(records);
  if (typeof rest === 'string') return { ok: false, rcode: Rcode.SERVFAIL, reason: `the target's reply rebuilds badly: ${rest}` };
  const headAnswers = h.readUInt16BE(6);
  const tailAnswers = records.readUInt16BE(6);
  const size = h.length + records.length - rest.questionEnd;
  if (size > MAX_MESSAGE) return { ok: false, rcode: Rcode.SERVFAIL, reason: 'the joined reply exceeds 65535 octets' };
  const wire = Buffer.concat([h, records.subarray(rest.questionEnd)], size);
  wire.writeUInt16BE(0, 0);
  wire.writeUInt16BE(Flag.QR | (scan.rcode & RCODE_MASK), 2);
  wire.writeUInt16BE(headAnswers + tailAnswers, 6);
  wire.writeUInt16BE(records.readUInt16BE(8), 8);
  wire.writeUInt16BE(records.readUInt16BE(10), 10);
  const joined = scanMessage(wire);
  if (typeof joined === 'string') return { ok: false, rcode: Rcode.SERVFAIL, reason: `the joined reply is malformed: ${joined}` };
  const chain = cnameChain(wire, joined, qname);
  if (chain.problem !== null) return { ok: false, rcode: Rcode.SERVFAIL, reason: chain.problem };
  const t = templateFromScan(wire, joined, false);
  let min = tailAnswers > 0 ? Infinity : negativeTtl(t);
  for (let i = 0; i < t.records.length; i++) if (t.records[i]!.section === Section.Answer) min = Math.min(min, templateTtl(t, i));
  for (let i = 0; i < t.records.length; i++) if (t.records[i]!.section === Section.Answer) t.buf.writeUInt32BE(min, t.ttlOffsets[i]!);
  return { ok: true, template: t };
}

/** RFC 2308 section 5: min(SOA TTL, SOA MINIMUM) of the authority's SOA; 0 without one. */
function negativeTtl(t: ScannedTemplate): number {
  for (let i = 0; i < t.records.length; i++) {
    const r = t.records[i]!;
    if (r.section !== Section.Authority || r.type !== QType.SOA || r.rdLength < 20) continue;
    return Math.min(templateTtl(t, i), t.buf.readUInt32BE(r.rdStart + r.rdLength - 4));
  }
  return 0;
}
