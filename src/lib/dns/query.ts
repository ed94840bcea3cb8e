// Strict parser for incoming queries: header, the single question and the OPT record only.
// It runs on every packet, so it reads in place and builds one object; the rest stays raw.

import { EdnsOption, Flag, HEADER_SIZE, MIN_UDP_SIZE, OPCODE_MASK, QType, Rcode } from './constants.js';
import { readName, skipName } from './name.js';

export interface ClientSubnet {
  family: 1 | 2;
  sourcePrefix: number;
  scopePrefix: number;
  /** The address padded to 4 or 16 octets. */
  address: Uint8Array;
}

export interface EdnsInfo {
  udpSize: number;
  version: number;
  dnssecOk: boolean;
  ecs: ClientSubnet | null;
}

export interface ParsedQuery {
  id: number;
  /** The raw 16-bit flags word of the query. */
  flags: number;
  /** Lower-cased presentation form of QNAME without trailing dot ("." for the root). */
  name: string;
  qtype: number;
  qclass: number;
  /** Offset just past QCLASS: bytes 12..questionEnd are the question as the client spelled it. */
  questionEnd: number;
  edns: EdnsInfo | null;
}

/** Why a packet is not a query we answer normally, and what to do about it. */
export interface QueryRejection {
  /** 'drop': no reply at all (no readable header, or a response); else reply with `rcode`. */
  action: 'drop' | 'reply';
  rcode: number;
  reason: string;
  id: number;
  flags: number;
  /** End of a well-formed question to echo, or 0 when none can be echoed. */
  questionEnd: number;
  /** Whether a well-formed OPT was seen, so the error reply carries one too. */
  edns: boolean;
}

export type QueryParse = ParsedQuery | QueryRejection;

export function isRejection(p: QueryParse): p is QueryRejection {
  return (p as QueryRejection).action !== undefined;
}

function reject(
  action: 'drop' | 'reply',
  rcode: number,
  reason: string,
  buf: Uint8Array,
  questionEnd = 0,
  edns = false,
): QueryRejection {
  const id = buf.length >= 2 ? (buf[0]! << 8) | buf[1]! : 0;
  const flags = buf.length >= 4 ? (buf[2]! << 8) | buf[3]! : 0;
  return { action, rcode, reason, id, flags, questionEnd, edns };
}

function u16(buf: Uint8Array, o: number): number {
  return (buf[o]! << 8) | buf[o + 1]!;
}

/**
 * Parses a query. Anything a stage later relies on is validated here, because dns-packet would
 * accept overrunning lengths, duplicate OPTs and impossible ECS prefixes (PITFALLS.md).
 */
export function parseQuery(buf: Uint8Array): QueryParse {
  if (buf.length < HEADER_SIZE) return reject('drop', 0, 'shorter than a header', buf);
  const flags = u16(buf, 2);
  if (flags & Flag.QR) return reject('drop', 0, 'QR set: a response, not a query', buf);
  if ((flags & OPCODE_MASK) !== 0) return reject('reply', Rcode.NOTIMP, 'opcode not implemented', buf);
  const qdcount = u16(buf, 4);
  const ancount = u16(buf, 6);
  const nscount = u16(buf, 8);
  const arcount = u16(buf, 10);
  if (qdcount !== 1) return reject('reply', Rcode.FORMERR, `QDCOUNT is ${qdcount}, not 1`, buf);
  if (ancount !== 0 || nscount !== 0) return reject('reply', Rcode.FORMERR, 'answer or authority records in a query', buf);

  const q = readName(buf, HEADER_SIZE, false);
  if (q === null || q.end + 4 > buf.length) return reject('reply', Rcode.FORMERR, 'malformed question', buf);
  const qtype = u16(buf, q.end);
  const qclass = u16(buf, q.end + 2);
  const questionEnd = q.end + 4;

  let edns: EdnsInfo | null = null;
  let off = questionEnd;
  for (let i = 0; i < arcount; i++) {
    const ownerStart = off;
    off = skipName(buf, off);
    if (off < 0 || off + 10 > buf.length) return reject('reply', Rcode.FORMERR, 'malformed additional record', buf, questionEnd);
    const type = u16(buf, off);
    const rdlen = u16(buf, off + 8);
    const rdStart = off + 10;
    if (rdStart + rdlen > buf.length) return reject('reply', Rcode.FORMERR, 'RDLENGTH overruns the packet', buf, questionEnd);
    if (type === QType.OPT) {
      if (edns !== null) return reject('reply', Rcode.FORMERR, 'two OPT records', buf, questionEnd, true);
      if (buf[ownerStart] !== 0 || off !== ownerStart + 1) return reject('reply', Rcode.FORMERR, 'OPT not owned by the root', buf, questionEnd);
      const parsed = parseOpt(buf, off, rdStart, rdlen);
      if (typeof parsed === 'string') return reject('reply', Rcode.FORMERR, parsed, buf, questionEnd, true);
      edns = parsed;
    }
    off = rdStart + rdlen;
  }
  if (off !== buf.length) return reject('reply', Rcode.FORMERR, 'trailing bytes after the last record', buf, questionEnd, edns !== null);
  if (edns !== null && edns.version !== 0) return reject('reply', Rcode.BADVERS, `EDNS version ${edns.version}`, buf, questionEnd, true);
  if (qtype === QType.OPT) return reject('reply', Rcode.FORMERR, 'QTYPE OPT', buf, questionEnd, edns !== null);
  return { id: u16(buf, 0), flags, name: q.name, qtype, qclass, questionEnd, edns };
}

function parseOpt(buf: Uint8Array, typeOff: number, rdStart: number, rdlen: number): EdnsInfo | string {
  const udpSize = Math.max(MIN_UDP_SIZE, u16(buf, typeOff + 2));
  const version = buf[typeOff + 5]!;
  const dnssecOk = (buf[typeOff + 6]! & 0x80) !== 0;
  let ecs: ClientSubnet | null = null;
  let o = rdStart;
  const end = rdStart + rdlen;
  while (o < end) {
    if (o + 4 > end) return 'truncated EDNS option';
    const code = u16(buf, o);
    const len = u16(buf, o + 2);
    const data = o + 4;
    if (data + len > end) return 'EDNS option overruns the OPT record';
    if (code === EdnsOption.ECS) {
      if (ecs !== null) return 'two Client Subnet options';
      const parsed = parseEcs(buf, data, len);
      if (typeof parsed === 'string') return parsed;
      ecs = parsed;
    }
    o = data + len;
  }
  return { udpSize, version, dnssecOk, ecs };
}

/** RFC 7871 section 6: the prefix must fit the family and the address must not carry extra bits. */
function parseEcs(buf: Uint8Array, o: number, len: number): ClientSubnet | string {
  if (len < 4) return 'Client Subnet option shorter than 4 octets';
  const family = u16(buf, o);
  const sourcePrefix = buf[o + 2]!;
  const scopePrefix = buf[o + 3]!;
  if (family !== 1 && family !== 2) return `Client Subnet family ${family}`;
  const maxBits = family === 1 ? 32 : 128;
  if (sourcePrefix > maxBits) return `Client Subnet prefix ${sourcePrefix} longer than the address`;
  if (scopePrefix !== 0) return 'Client Subnet scope prefix set in a query';
  const addrLen = len - 4;
  if (addrLen !== Math.ceil(sourcePrefix / 8)) return 'Client Subnet address length does not match its prefix';
  const address = new Uint8Array(maxBits / 8);
  for (let i = 0; i < addrLen; i++) address[i] = buf[o + 4 + i]!;
  if (sourcePrefix % 8 !== 0 && addrLen > 0) {
    const mask = 0xff >> (sourcePrefix % 8);
    if ((address[addrLen - 1]! & mask) !== 0) return 'Client Subnet address has bits beyond its prefix';
  }
  return { family, sourcePrefix, scopePrefix, address };
}
