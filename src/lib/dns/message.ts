// Validating walk over a whole DNS message (upstream replies, locally encoded answers).
// It records where every TTL sits so the wire can be reused and aged without a decode.

import { Flag, HEADER_SIZE, QType } from './constants.js';
import { skipName, wireNamesEqual } from './name.js';

export const enum Section { Answer = 0, Authority = 1, Additional = 2 }

export interface RecordInfo {
  section: Section;
  start: number;
  type: number;
  klass: number;
  ttlOffset: number;
  ttl: number;
  rdStart: number;
  rdLength: number;
}

export interface MessageScan {
  flags: number;
  /** Full rcode: header bits plus OPT extended bits. */
  rcode: number;
  questionEnd: number;
  records: RecordInfo[];
  /** Index of the OPT record in `records`, or -1. */
  opt: number;
}

function u16(buf: Uint8Array, o: number): number {
  return (buf[o]! << 8) | buf[o + 1]!;
}

/** Octet length RDATA must have for types whose size is fixed. */
const FIXED_RDLEN: Record<number, number> = { [QType.A]: 4, [QType.AAAA]: 16 };
/**
 * Class-IN types whose RDATA holds names (which may be compressed): octets before the names,
 * how many names, and octets after them. scanMessage checks the names and the exact length, so
 * rebuildMessage, the scrubber and the renamer can follow them safely.
 */
export const RDATA_NAMES: Readonly<Record<number, { readonly skip: number; readonly names: number; readonly tail: number }>> = {
  [QType.NS]: { skip: 0, names: 1, tail: 0 },
  [QType.CNAME]: { skip: 0, names: 1, tail: 0 },
  [QType.PTR]: { skip: 0, names: 1, tail: 0 },
  [QType.DNAME]: { skip: 0, names: 1, tail: 0 },
  [QType.MX]: { skip: 2, names: 1, tail: 0 },
  [QType.SRV]: { skip: 6, names: 1, tail: 0 },
  [QType.SOA]: { skip: 0, names: 2, tail: 20 },
};

/** True when the RDATA of a name-bearing type is well formed and exactly fills RDLENGTH. */
function rdataNamesValid(buf: Uint8Array, type: number, rdStart: number, rdLength: number): boolean {
  const shape = RDATA_NAMES[type];
  if (shape === undefined) return true;
  let o = rdStart + shape.skip;
  for (let n = 0; n < shape.names; n++) {
    o = skipName(buf, o);
    if (o < 0 || o > rdStart + rdLength) return false;
  }
  return o + shape.tail === rdStart + rdLength;
}

/**
 * Walks a message: the header must be a response (QR=1), with one question and records that
 * stay inside the packet. Returns a reason string when anything is malformed.
 */
export function scanMessage(buf: Uint8Array): MessageScan | string {
  if (buf.length < HEADER_SIZE) return 'shorter than a header';
  const flags = u16(buf, 2);
  if (!(flags & Flag.QR)) return 'QR clear';
  if (u16(buf, 4) !== 1) return 'QDCOUNT is not 1';
  const qEnd = skipName(buf, HEADER_SIZE);
  if (qEnd < 0 || qEnd + 4 > buf.length) return 'malformed question';
  const counts = [u16(buf, 6), u16(buf, 8), u16(buf, 10)];
  const records: RecordInfo[] = [];
  let opt = -1;
  let off = qEnd + 4;
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < counts[section]!; i++) {
      const start = off;
      off = skipName(buf, off);
      if (off < 0 || off + 10 > buf.length) return 'malformed record';
      const type = u16(buf, off);
      const klass = u16(buf, off + 2);
      const ttlOffset = off + 4;
      const ttl = ((buf[ttlOffset]! << 24) >>> 0) + ((buf[ttlOffset + 1]! << 16) | u16(buf, ttlOffset + 2));
      const rdLength = u16(buf, off + 8);
      const rdStart = off + 10;
      if (rdStart + rdLength > buf.length) return 'RDLENGTH overruns the packet';
      const fixed = FIXED_RDLEN[type];
      if (fixed !== undefined && klass === 1 && rdLength !== fixed) return `type ${type} with RDLENGTH ${rdLength}`;
      if (klass === 1 && !rdataNamesValid(buf, type, rdStart, rdLength)) return `type ${type} with malformed RDATA`;
      if (type === QType.OPT) {
        if (section !== Section.Additional) return 'OPT outside the additional section';
        if (opt >= 0) return 'two OPT records';
        if (buf[start] !== 0 || off !== start + 1) return 'OPT not owned by the root';
        opt = records.length;
      }
      records.push({ section, start, type, klass, ttlOffset, ttl, rdStart, rdLength });
      off = rdStart + rdLength;
    }
  }
  if (off !== buf.length) return 'trailing bytes after the last record';
  let rcode = flags & 0x000f;
  if (opt >= 0) rcode |= buf[records[opt]!.ttlOffset]! << 4;
  return { flags, rcode, questionEnd: qEnd + 4, records, opt };
}

/** True when the question of `reply` equals the one in `query` (name compared case-insensitively). */
export function sameQuestion(query: Uint8Array, queryQEnd: number, reply: Uint8Array, replyQEnd: number): boolean {
  if (queryQEnd !== replyQEnd) return false;
  const nameLen = queryQEnd - 4 - HEADER_SIZE;
  if (!wireNamesEqual(query, HEADER_SIZE, reply, HEADER_SIZE, nameLen)) return false;
  for (let i = queryQEnd - 4; i < queryQEnd; i++) if (query[i] !== reply[i]) return false;
  return true;
}

/** Appends the name at `off` uncompressed to `out`; returns the offset past it, or -1. */
function copyName(buf: Uint8Array, off: number, out: number[]): number {
  let end = -1;
  let octets = 0;
  let limit = off; // pointers go strictly backwards, as skipName demands: no loops
  for (;;) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) {
      out.push(0);
      return end < 0 ? off + 1 : end;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return -1;
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (off >= limit) return -1;
      limit = off;
      continue;
    }
    octets += len + 1;
    if (len > 63 || octets > 254 || off + 1 + len > buf.length) return -1;
    for (let i = off; i <= off + len; i++) out.push(buf[i]!);
    off += len + 1;
  }
}

/**
 * The message with only the records `keep` marks, rebuilt on the wire with their names
 * uncompressed (a kept record may point into a dropped one). Octets are copied, never decoded:
 * a dns-packet round trip would rewrite label octets over 0x7f as U+FFFD. Throws when a name
 * it must expand is malformed.
 */
export function rebuildMessage(buf: Uint8Array, scan: MessageScan, keep: readonly boolean[]): Buffer {
  return rebuild(buf, scan, keep, null, 0);
}

/**
 * The reply to a rewritten query, given back the question the client asked (octets 12 to
 * `clientQEnd` of `client`, as spelled): records owned by the rewritten name are owned by the
 * client's name again (a pointer to it), every other name is expanded, since the question's
 * length may change and old pointers past it would land elsewhere. Names inside RDATA are left
 * as they are (a CNAME to the rewritten name stays so), as CoreDNS's reverter does by default.
 * Throws when the reply is malformed.
 */
export function restoreQuestion(reply: Uint8Array, client: Uint8Array, clientQEnd: number): Buffer {
  const scan = scanMessage(reply);
  if (typeof scan === 'string') throw new Error(`restoreQuestion: reply ${scan}`);
  return rebuild(reply, scan, null, client, clientQEnd);
}

function rebuild(buf: Uint8Array, scan: MessageScan, keep: readonly boolean[] | null, client: Uint8Array | null, clientQEnd: number): Buffer {
  const out: number[] = [];
  for (let i = 0; i < HEADER_SIZE; i++) out.push(buf[i]!);
  if (client === null) for (let i = HEADER_SIZE; i < scan.questionEnd; i++) out.push(buf[i]!);
  else for (let i = HEADER_SIZE; i < clientQEnd; i++) out.push(client[i]!);
  // The name the records of the rewritten question are owned by (uncompressed in a question).
  const qnameLen = scan.questionEnd - 4 - HEADER_SIZE;
  const owner: number[] = [];
  const counts = [0, 0, 0];
  scan.records.forEach((r, i) => {
    if (keep !== null && !keep[i]) return;
    counts[r.section]!++;
    if (client === null) {
      if (copyName(buf, r.start, out) < 0) throw new Error('malformed owner name');
    } else {
      owner.length = 0;
      if (copyName(buf, r.start, owner) < 0) throw new Error('malformed owner name');
      if (owner.length === qnameLen && wireNamesEqual(Uint8Array.from(owner), 0, buf, HEADER_SIZE, qnameLen)) out.push(0xc0, HEADER_SIZE);
      else for (const o of owner) out.push(o);
    }
    for (let o = r.ttlOffset - 4; o < r.ttlOffset + 4; o++) out.push(buf[o]!);
    const lenAt = out.length;
    out.push(0, 0);
    const shape = RDATA_NAMES[r.type];
    const rdEnd = r.rdStart + r.rdLength;
    let o = r.rdStart;
    if (shape !== undefined && r.klass === 1) {
      if (o + shape.skip > rdEnd) throw new Error(`type ${r.type}: RDATA too short`);
      for (; o < r.rdStart + shape.skip; o++) out.push(buf[o]!);
      for (let n = 0; n < shape.names; n++) {
        o = copyName(buf, o, out);
        if (o < 0 || o > rdEnd) throw new Error(`type ${r.type}: malformed name in RDATA`);
      }
    }
    for (; o < rdEnd; o++) out.push(buf[o]!);
    const rdLength = out.length - lenAt - 2;
    out[lenAt] = rdLength >> 8;
    out[lenAt + 1] = rdLength & 0xff;
  });
  const wire = Buffer.from(out);
  for (let s = 0; s < 3; s++) wire.writeUInt16BE(counts[s]!, 6 + 2 * s);
  return wire;
}
