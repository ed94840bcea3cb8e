// Validating walk over a whole DNS message (upstream replies, locally encoded answers).
// It records where every TTL sits so the wire can be reused and aged without a decode.

import { Flag, HEADER_SIZE, QType } from './constants.js';
import { readName, skipName, wireNamesEqual } from './name.js';

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
/** Types whose RDATA is a single name: it must be a valid name filling RDATA exactly. */
const NAME_RDATA = new Set<number>([QType.NS, QType.CNAME, QType.PTR, QType.DNAME]);

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
      if (NAME_RDATA.has(type) && skipName(buf, rdStart) !== rdStart + rdLength) return `type ${type} with a malformed name`;
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

/** Owner name of a record, lower-cased presentation form. */
export function ownerName(buf: Uint8Array, rec: RecordInfo): string {
  return readName(buf, rec.start)!.name;
}

/** The name at the start of RDATA (CNAME/NS/PTR/DNAME target), or after `skip` octets (MX, SRV). */
export function rdataName(buf: Uint8Array, rec: RecordInfo, skip = 0): string | null {
  if (rec.rdLength <= skip) return null;
  return readName(buf, rec.rdStart + skip)?.name ?? null;
}
