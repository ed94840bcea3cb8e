// Reusable reply wire: a message stored once with the offsets of its TTLs, then stamped per client.
// Cache hits and local answers are rendered from templates: copy, patch ID/flags/question/TTLs.

import { DEFAULT_EDNS_SIZE, Flag, HEADER_SIZE, QType, RCODE_MASK, Rcode } from './constants.js';
import { rebuildMessage, scanMessage, type MessageScan, type RecordInfo, Section } from './message.js';
import type { ParsedQuery } from './query.js';

export interface WireTemplate {
  /** Header (ID zero, flags of the source) + question + records, without OPT. */
  readonly buf: Buffer;
  readonly questionEnd: number;
  /** Offset of every record's TTL in `buf`; the TTLs themselves live in `buf`. */
  readonly ttlOffsets: readonly number[];
}

/** A template fresh from a scan, with what the cache needs to judge it; not kept. */
export interface ScannedTemplate extends WireTemplate {
  readonly rcode: number;
  readonly records: readonly RecordInfo[];
}

const OPT_SIZE = 11;
/** RFC 2181 section 8: a TTL with the top bit set is treated as zero. */
const MAX_TTL = 0x7fffffff;

/**
 * Builds a template from a scanned message, dropping its OPT record (the client's own EDNS
 * state is added back at render time). Only a trailing OPT is cut in place; one in the middle
 * of the additional section means rebuilding, since later names may point past it.
 * AA says `authoritative`: false for an upstream's answer relayed or cached by us (RFC 1035
 * 4.1.1; genreport's recursive checks flag it), true for local data (encodeLocal).
 */
export function templateFromScan(buf: Uint8Array, scan: MessageScan, authoritative: boolean): ScannedTemplate {
  let body: Buffer;
  let records = scan.records;
  if (scan.opt < 0) {
    body = Buffer.from(buf);
  } else if (scan.opt === records.length - 1) {
    const opt = records[scan.opt]!;
    body = Buffer.from(buf.subarray(0, opt.start));
    body.writeUInt16BE(body.readUInt16BE(10) - 1, 10);
    records = records.slice(0, -1);
  } else {
    const wire = rebuildMessage(buf, scan, records.map((_, i) => i !== scan.opt));
    const again = scanMessage(wire);
    if (typeof again === 'string') throw new Error(`rebuilt message is malformed: ${again}`);
    return templateFromScan(wire, again, authoritative);
  }
  body.writeUInt16BE(0, 0);
  body[2] = authoritative ? body[2]! | (Flag.AA >> 8) : body[2]! & ~(Flag.AA >> 8);
  const ttlOffsets: number[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (r.ttl > MAX_TTL) body.writeUInt32BE(0, r.ttlOffset);
    ttlOffsets[i] = r.ttlOffset;
  }
  return { buf: body, questionEnd: scan.questionEnd, ttlOffsets, rcode: scan.rcode, records };
}

/** The TTL of record `i` as the template holds it. */
export function templateTtl(t: WireTemplate, i: number): number {
  return t.buf.readUInt32BE(t.ttlOffsets[i]!);
}

/** Rewrites every TTL of a template into [min, max]; used by the cache's clamps. */
export function clampTemplateTtls(t: WireTemplate, min: number, max: number): boolean {
  let changed = false;
  for (let i = 0; i < t.ttlOffsets.length; i++) {
    const ttl = templateTtl(t, i);
    const clamped = Math.min(max, Math.max(min, ttl));
    if (clamped !== ttl) {
      t.buf.writeUInt32BE(clamped, t.ttlOffsets[i]!);
      changed = true;
    }
  }
  return changed;
}

/** Reply flags: the template's AA/AD/rcode, the client's RD and CD, always RA. */
function replyFlags(templateFlags: number, q: ParsedQuery): number {
  let flags = Flag.QR | Flag.RA | (templateFlags & (Flag.AA | RCODE_MASK)) | (q.flags & (Flag.RD | Flag.CD));
  // RFC 6840 5.8: AD only for clients that asked for it, with AD or DO.
  if (templateFlags & Flag.AD && (q.flags & Flag.AD || q.edns?.dnssecOk)) flags |= Flag.AD;
  return flags;
}

function writeOpt(out: Buffer, at: number, dnssecOk: boolean, extRcode = 0): void {
  out[at] = 0;
  out.writeUInt16BE(QType.OPT, at + 1);
  out.writeUInt16BE(DEFAULT_EDNS_SIZE, at + 3);
  out[at + 5] = extRcode;
  out[at + 6] = 0; // version 0
  out[at + 7] = dnssecOk ? 0x80 : 0;
  out[at + 8] = 0;
  out.writeUInt16BE(0, at + 9);
}

/**
 * Stamps a template for one client: its ID, flags, its spelling of the question, TTLs aged by
 * `age` seconds, and an OPT record when the client sent one. The question lengths match because
 * templates are only looked up by the same name.
 */
export function renderTemplate(t: WireTemplate, raw: Uint8Array, q: ParsedQuery, age: number): Buffer {
  const len = t.buf.length;
  const out = Buffer.allocUnsafe(q.edns ? len + OPT_SIZE : len);
  // TypedArray.set: no Buffer wrappers (subarray, copy) on the hot path.
  out.set(t.buf, 0);
  return stamp(out, len, t.ttlOffsets, raw, q, age);
}

/**
 * The same from a template held as a latin1 string (one octet per character): the cache keeps
 * its replies so, as a string costs a 16-octet header where a Buffer costs an object and pins
 * a shared 8 KiB pool slab.
 */
export function renderWire(wire: string, ttlOffsets: readonly number[], raw: Uint8Array, q: ParsedQuery, age: number): Buffer {
  const len = wire.length;
  const out = Buffer.allocUnsafe(q.edns ? len + OPT_SIZE : len);
  // A JS loop beats Buffer#write for the usual few hundred octets (perf: 1.2 us of user time
  // per hit less; write is a C++ call with its argument checks); memcpy wins on long ones.
  if (len <= 512) for (let i = 0; i < len; i++) out[i] = wire.charCodeAt(i);
  else out.write(wire, 0, len, 'latin1');
  return stamp(out, len, ttlOffsets, raw, q, age);
}

/** Patches a copied template in place: ID, flags, question spelling, aged TTLs, OPT. */
function stamp(out: Buffer, len: number, ttlOffsets: readonly number[], raw: Uint8Array, q: ParsedQuery, age: number): Buffer {
  out[0] = q.id >> 8;
  out[1] = q.id & 0xff;
  const flags = replyFlags((out[2]! << 8) | out[3]!, q);
  out[2] = flags >> 8;
  out[3] = flags & 0xff;
  for (let i = HEADER_SIZE; i < q.questionEnd; i++) out[i] = raw[i]!;
  if (age > 0) {
    for (let i = 0; i < ttlOffsets.length; i++) {
      const o = ttlOffsets[i]!;
      // TTLs are at most 2^31 - 1 here (templateFromScan), so plain integer math is exact.
      let ttl = out[o]! * 0x1000000 + ((out[o + 1]! << 16) | (out[o + 2]! << 8) | out[o + 3]!) - age;
      if (ttl < 0) ttl = 0;
      out[o] = ttl >>> 24;
      out[o + 1] = (ttl >>> 16) & 0xff;
      out[o + 2] = (ttl >>> 8) & 0xff;
      out[o + 3] = ttl & 0xff;
    }
  }
  if (q.edns) {
    writeOpt(out, len, q.edns.dnssecOk);
    out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  }
  return out;
}

/**
 * A reply carrying only a header (and the question and an OPT when they were well formed):
 * FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS. The opcode and RD of the query are echoed. RA and
 * CD only answer a QUERY we understood: a FORMERR or NOTIMP reply carries neither (RFC 1035
 * 4.1.1, RFC 6895 2: both bits belong to the query opcode; genreport's opcode checks).
 */
export function errorReply(
  raw: Uint8Array,
  id: number,
  queryFlags: number,
  rcode: number,
  questionEnd: number,
  edns: { dnssecOk: boolean } | null,
): Buffer {
  const qLen = questionEnd > HEADER_SIZE ? questionEnd - HEADER_SIZE : 0;
  const out = Buffer.alloc(HEADER_SIZE + qLen + (edns ? OPT_SIZE : 0));
  out.writeUInt16BE(id, 0);
  const understood = rcode !== Rcode.FORMERR && rcode !== Rcode.NOTIMP;
  const flags = Flag.QR | (understood ? Flag.RA | (queryFlags & Flag.CD) : 0) | (queryFlags & (0x7800 | Flag.RD)) | (rcode & RCODE_MASK);
  out.writeUInt16BE(flags, 2);
  out.writeUInt16BE(qLen > 0 ? 1 : 0, 4);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  if (qLen > 0) out.set(raw.subarray(HEADER_SIZE, questionEnd), HEADER_SIZE);
  if (edns) writeOpt(out, HEADER_SIZE + qLen, edns.dnssecOk, rcode >> 4);
  return out;
}

/**
 * A UDP reply too large for the client becomes header + question (+ OPT) with TC set, so the
 * client retries over TCP (RFC 7766); partial RRsets are never sent.
 */
export function truncateReply(reply: Buffer, questionEnd: number, edns: { dnssecOk: boolean } | null): Buffer {
  const out = Buffer.alloc(questionEnd + (edns ? OPT_SIZE : 0));
  reply.copy(out, 0, 0, questionEnd);
  out.writeUInt16BE(reply.readUInt16BE(2) | Flag.TC, 2);
  out.writeUInt16BE(0, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(edns ? 1 : 0, 10);
  if (edns) writeOpt(out, questionEnd, edns.dnssecOk);
  return out;
}

/** Smallest TTL among the records of a section, or undefined when it has none. */
export function minSectionTtl(t: ScannedTemplate, section: Section): number | undefined {
  let min: number | undefined;
  for (let i = 0; i < t.records.length; i++) {
    if (t.records[i]!.section !== section) continue;
    const ttl = templateTtl(t, i);
    if (min === undefined || ttl < min) min = ttl;
  }
  return min;
}
