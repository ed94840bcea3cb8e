// ISC genreport's recursive-mode (-R) full (-f) checks, re-expressed for tests: the same queries
// (header bits, opcode, OPT, options, transport) and the same judgement of each reply as tags.

import { checkMessage, type CheckedMessage } from './packets.js';
import { tcpExchange, udpExchange } from './client.js';

export interface GenreportCheck {
  name: string;
  /** EDNS UDP size; 0: no OPT at all. */
  udpsize: number;
  /** EDNS flags word (DO is 0x8000). */
  ednsFlags: number;
  version: number;
  tcp: boolean;
  /** The OPT carries a client cookie: BADCOOKIE would be an acceptable rcode. */
  cookie: boolean;
  /** TC in the reply is accepted as is (no retry over TCP), but the reply must fit. */
  ignore: boolean;
  tc: boolean;
  ra: boolean;
  cd: boolean;
  ad: boolean;
  aa: boolean;
  z: boolean;
  opcode: number;
  qtype: number;
  /** EDNS option octets (code, length, data). */
  options: Buffer;
}

const SOA = 6;
const DNSKEY = 48;
const RRSIG = 46;
const NSID = Buffer.from('00030000', 'hex');
const ECS = Buffer.from('0008000400010000', 'hex');
const EXPIRE = Buffer.from('00090000', 'hex');
const COOKIE = Buffer.from('000a00080102030405060708', 'hex');
const OPT100 = Buffer.from('00640000', 'hex');

function check(name: string, c: Partial<GenreportCheck>): GenreportCheck {
  return { name, udpsize: 0, ednsFlags: 0, version: 0, tcp: false, cookie: false, ignore: false, tc: false, ra: false, cd: false, ad: false, aa: false, z: false, opcode: 0, qtype: SOA, options: Buffer.alloc(0), ...c };
}

const E0 = { udpsize: 4096 };
const E1 = { udpsize: 4096, version: 1 };

/** genreport's FULL group (which includes EDNS), in its order; "signed" is derived from "do". */
export const GENREPORT_FULL: readonly GenreportCheck[] = [
  check('dns', {}),
  check('aa', { aa: true }),
  check('ad', { ad: true }),
  check('cd', { cd: true }),
  check('ra', { ra: true }),
  check('rd', {}),
  check('tc', { tc: true }),
  check('zflag', { z: true }),
  check('opcode', { opcode: 15, qtype: 0 }),
  check('opcodeflg', { opcode: 15, qtype: 0, tc: true, ra: true, cd: true, ad: true, aa: true, z: true }),
  check('type666', { qtype: 666 }),
  check('tcp', { tcp: true }),
  check('edns', E0),
  check('edns1', E1),
  check('edns@512', { udpsize: 512, ignore: true, qtype: DNSKEY }),
  check('ednsopt', { ...E0, options: OPT100 }),
  check('edns1opt', { ...E1, options: OPT100 }),
  check('do', { ...E0, ednsFlags: 0x8000 }),
  check('docd', { ...E0, ednsFlags: 0x8000, cd: true }),
  check('edns1do', { ...E1, ednsFlags: 0x8000 }),
  check('ednsflags', { ...E0, ednsFlags: 0x0080 }),
  check('optlist', { ...E0, cookie: true, options: Buffer.concat([NSID, ECS, EXPIRE, COOKIE]) }),
  check('ednsnsid', { ...E0, options: NSID }),
  check('ednscookie', { ...E0, cookie: true, options: COOKIE }),
  check('ednsexpire', { ...E0, options: EXPIRE }),
  check('ednssubnet', { ...E0, options: ECS }),
  check('edns1nsid', { ...E1, options: NSID }),
  check('edns1cookie', { ...E1, cookie: true, options: COOKIE }),
  check('edns1expire', { ...E1, options: EXPIRE }),
  check('edns1subnet', { ...E1, options: ECS }),
  check('ednstcp', { udpsize: 512, ednsFlags: 0x8000, tcp: true, qtype: DNSKEY }),
];

function nameWire(name: string): Buffer {
  return Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/**
 * The query genreport sends: RD always (recursive mode), the check's header bits and opcode; an
 * opcode other than QUERY goes without a question (header only), as genreport sends it.
 */
export function genreportQuery(c: GenreportCheck, zone: string, id: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  let flags = (c.opcode << 11) | 0x0100;
  if (c.aa) flags |= 0x0400;
  if (c.tc) flags |= 0x0200;
  if (c.ra) flags |= 0x0080;
  if (c.z) flags |= 0x0040;
  if (c.ad) flags |= 0x0020;
  if (c.cd) flags |= 0x0010;
  h.writeUInt16BE(flags, 2);
  if (c.opcode !== 0) return h;
  h.writeUInt16BE(1, 4);
  const parts = [h, nameWire(zone), Buffer.from([c.qtype >> 8, c.qtype & 0xff, 0, 1])];
  if (c.udpsize > 0) {
    h.writeUInt16BE(1, 10);
    const opt = Buffer.alloc(11);
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(c.udpsize, 3);
    opt.writeUInt32BE(((c.version << 16) | c.ednsFlags) >>> 0, 5);
    opt.writeUInt16BE(c.options.length, 9);
    parts.push(opt, c.options);
  }
  return Buffer.concat(parts);
}

export interface GenreportResult {
  /** "ok" or the failure tags, comma-separated, as genreport prints them. */
  result: string;
  seenRrsig: boolean;
  reply: Buffer | null;
}

function optionCodes(m: CheckedMessage): number[] {
  const codes: number[] = [];
  const d = m.opt?.rdata;
  for (let o = 0; d && o + 4 <= d.length; o += 4 + d.readUInt16BE(o + 2)) codes.push(d.readUInt16BE(o));
  return codes;
}

const RCODES: Record<number, string> = { 0: 'noerror', 1: 'formerr', 2: 'servfail', 3: 'nxdomain', 4: 'notimp', 5: 'refused', 16: 'badvers', 23: 'badcookie' };
const OPCODES: Record<number, string> = { 0: 'query', 1: 'iquery', 2: 'status', 4: 'notify', 5: 'update' };

/** Judges one reply by genreport's rules for a recursive server; returns its tags. */
export function judge(c: GenreportCheck, zone: string, reply: Buffer): { tags: string[]; seenRrsig: boolean } {
  const m = checkMessage(reply);
  if (typeof m === 'string') return { tags: ['malformed'], seenRrsig: false };
  const tags: string[] = [];
  const f = m.flags;
  const opcode = (f >> 11) & 0xf;
  const [aa, rd, ra, z, ad, cd] = [f & 0x0400, f & 0x0100, f & 0x0080, f & 0x0040, f & 0x0020, f & 0x0010].map((b) => b !== 0);
  const counts = [reply.readUInt16BE(6), reply.readUInt16BE(8), reply.readUInt16BE(10)];
  if (c.opcode !== 0) {
    if (m.qdcount !== 0) tags.push('non-empty-question-section');
    if (counts[0] !== 0) tags.push('non-empty-answer-section');
    if (counts[1] !== 0) tags.push('non-empty-authority-section');
    if (counts[2] !== 0) tags.push('non-empty-additional-section');
  } else if (m.qdcount === 1 && (m.qname !== zone.toLowerCase() || m.qtype !== c.qtype)) {
    return { tags: ['mismatch'], seenRrsig: false };
  }
  const rcode = m.rcode;
  const seenOpt = m.opt !== null;
  const ednsTtl = m.opt?.ttl ?? 0;
  const seenSoa = m.records.some((r) => r.section === 0 && r.type === SOA && r.owner === zone.toLowerCase());
  const seenRrsig = m.records.some((r) => r.section === 0 && r.type === RRSIG);
  const codes = optionCodes(m);
  const seenCookie = codes.includes(10);
  if (c.opcode !== opcode) tags.push(OPCODES[opcode] ?? `opcode${opcode}`);
  const rcodeText = RCODES[rcode] ?? `rcode${rcode}`;
  if (c.version === 0) {
    if (c.opcode === 0 && rcode !== 0 && (!c.cookie || rcode !== 23 || !seenCookie)) tags.push(rcodeText);
    if (c.opcode !== 0 && rcode !== 4) tags.push(rcodeText);
  } else if (rcode !== 16) {
    tags.push(rcodeText);
  }
  const ednsVersion = (ednsTtl >>> 16) & 0xff;
  if (seenOpt && ednsVersion !== 0) tags.push('version-not-zero');
  if (seenOpt && ((ednsVersion < c.version && rcode !== 16) || (ednsVersion >= c.version && rcode === 16))) tags.push('badversion');
  if (!seenOpt && c.udpsize) tags.push('noopt');
  if (seenOpt && c.udpsize === 0) tags.push('opt');
  if (c.qtype === SOA && c.version === 0 && !c.ignore && !seenSoa && rcode === 0) tags.push('nosoa');
  if (c.qtype === SOA && seenSoa && (c.version !== 0 || rcode !== 0)) tags.push('soa');
  if (codes.includes(100)) tags.push('echoed');
  const askedDo = (c.ednsFlags & 0x8000) !== 0;
  if (seenOpt && askedDo && (ednsTtl & 0x8000) === 0 && seenRrsig) tags.push('nodo');
  if (seenOpt && askedDo && c.cd && (ednsTtl & 0x8000) !== 0 && !cd && seenRrsig) tags.push('nocd');
  // Recursive mode: AA is wrong on any reply; RA only on a QUERY; RD must come back on a QUERY.
  if (aa) tags.push('aa');
  if (ra && c.opcode !== 0) tags.push('ra');
  if (!rd && c.opcode === 0) tags.push('nord');
  if (ad && (c.opcode !== 0 || (!c.ad && !askedDo))) tags.push('ad');
  if (cd && (c.opcode !== 0 || !c.cd)) tags.push('cd');
  if (z) tags.push('z');
  if ((ednsTtl & 0x7fff) !== 0) tags.push('mbz');
  if (c.ignore && reply.length > (c.udpsize || 512)) tags.push('toobig');
  return { tags, seenRrsig };
}

/**
 * Runs one check against a server on loopback: UDP first (TCP for the TCP checks), and over TCP
 * again when the UDP reply is truncated and the check does not ignore TC, as genreport does.
 */
export async function runCheck(c: GenreportCheck, zone: string, port: number): Promise<GenreportResult> {
  const id = 1 + Math.floor(Math.random() * 0xfffe);
  const q = genreportQuery(c, zone, id);
  let reply: Buffer | null = null;
  if (!c.tcp) {
    reply = await udpExchange(port, q, { timeoutMs: 3000 });
    if (reply !== null && (reply[2]! & 0x02) !== 0 && !c.ignore) reply = null;
    else if (reply === null) return { result: 'timeout', seenRrsig: false, reply };
  }
  if (reply === null) reply = (await tcpExchange(port, [q], { timeoutMs: 3000 }))[0] ?? null;
  if (reply === null) return { result: 'timeout', seenRrsig: false, reply };
  if (reply.readUInt16BE(0) !== id) return { result: 'mismatch', seenRrsig: false, reply };
  const { tags, seenRrsig } = judge(c, zone, reply);
  return { result: tags.length === 0 ? 'ok' : tags.join(','), seenRrsig, reply };
}

/** All the checks in order, plus "signed" (the result of "do", and ",yes" when it saw an RRSIG). */
export async function runGenreport(zone: string, port: number): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const c of GENREPORT_FULL) {
    const r = await runCheck(c, zone, port);
    out.set(c.name, r.result);
    if (c.name === 'do') out.set('signed', `${r.result}${r.seenRrsig ? ',yes' : ''}`);
  }
  return out;
}
