// Scrubs an upstream reply of records that do not belong to the question (RFC 5452 section 6,
// as Unbound's scrubber): whatever a poisoner slips in never reaches a client or the cache.

import { QType } from './constants.js';
import { isSubdomain, readName } from './name.js';
import { rebuildMessage, scanMessage, Section, type MessageScan, type RecordInfo } from './message.js';

function nameAt(buf: Uint8Array, off: number): string {
  return readName(buf, off)?.name ?? '';
}

function questionType(buf: Uint8Array, scan: MessageScan): number {
  return (buf[scan.questionEnd - 4]! << 8) | buf[scan.questionEnd - 3]!;
}

/** Longest CNAME chain accepted, as Unbound's max CNAME chain; a longer one is a SERVFAIL. */
export const MAX_CNAME_CHAIN = 16;

/**
 * Whether an answer record of `type` can answer a question of `qtype`: the type itself, the
 * chain (CNAME, DNAME) and signatures. An AAAA in an A answer is someone else's data.
 */
function answersType(type: number, qtype: number): boolean {
  return type === qtype || qtype === QType.ANY || type === QType.CNAME || type === QType.DNAME || type === QType.RRSIG;
}

/** The chain from QNAME, and why the reply is unusable when it loops or runs too long. */
export interface Chain {
  /** QNAME, then each CNAME target in turn (at most MAX_CNAME_CHAIN + 1 names). */
  names: string[];
  problem: string | null;
}

/**
 * Follows the CNAME chain from QNAME through the answer section: each link is the first CNAME
 * (in record order) owned by the name before. It stops at a loop or past MAX_CNAME_CHAIN links,
 * with the reason. `owners` are the records' owner names, decoded once by the caller: a hostile
 * reply may hold thousands of records, and a walk that decoded them at every link would cost
 * links x records name decodings.
 */
function followChain(buf: Uint8Array, recs: readonly RecordInfo[], owners: readonly string[], qname: string): Chain {
  let firstCname: Map<string, number> | null = null;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.section !== Section.Answer || r.type !== QType.CNAME) continue;
    firstCname ??= new Map();
    if (!firstCname.has(owners[i]!)) firstCname.set(owners[i]!, i);
  }
  const names = [qname];
  if (firstCname === null) return { names, problem: null };
  for (;;) {
    const i = firstCname.get(names[names.length - 1]!);
    if (i === undefined) return { names, problem: null };
    const next = nameAt(buf, recs[i]!.rdStart);
    if (names.includes(next)) return { names, problem: `CNAME loop at ${next}` };
    if (names.length > MAX_CNAME_CHAIN) return { names, problem: `CNAME chain longer than ${MAX_CNAME_CHAIN}` };
    names.push(next);
  }
}

function ownerNames(buf: Uint8Array, recs: readonly RecordInfo[]): string[] {
  const out = new Array<string>(recs.length);
  for (let i = 0; i < recs.length; i++) out[i] = nameAt(buf, recs[i]!.start);
  return out;
}

/**
 * The CNAME chain from `qname` through the answer section (QNAME, then each target), and why
 * it is unusable when it loops or has more than MAX_CNAME_CHAIN links: for a stage that joined
 * its own CNAMEs to another answer (src/lib/dns/chain.ts), held to the same bounds as upstream replies.
 */
export function cnameChain(buf: Uint8Array, scan: MessageScan, qname: string): Chain {
  return followChain(buf, scan.records, ownerNames(buf, scan.records), qname);
}

/** Indexes of the records to keep. Answer: the CNAME/DNAME chain from QNAME, of types that
 *  answer QTYPE; authority: the zone above the chain's end; additional: addresses of names the
 *  kept records point to. */
export function keepList(buf: Uint8Array, scan: MessageScan, qname: string, qtype: number): boolean[] {
  const owners = ownerNames(buf, scan.records);
  return keepRecords(buf, scan.records, owners, followChain(buf, scan.records, owners, qname).names, qtype);
}

/**
 * keepList with the owner names and the chain already worked out (scrubReply has them). The
 * chain was followed by name, not in record order, so a reordered chain keeps all its links;
 * a second CNAME at a chain name (RFC 2181 section 10.1 allows one) is kept, but not followed.
 */
function keepRecords(buf: Uint8Array, recs: readonly RecordInfo[], owners: readonly string[], chain: readonly string[], qtype: number): boolean[] {
  const keep = new Array<boolean>(recs.length).fill(false);
  recs.forEach((r, i) => {
    if (r.section !== Section.Answer || !answersType(r.type, qtype)) return;
    const owner = owners[i]!;
    if (r.type === QType.DNAME) {
      for (const c of chain) if (c !== owner && isSubdomain(c, owner)) keep[i] = true;
      return;
    }
    if (chain.includes(owner)) keep[i] = true;
  });
  const targets = new Set<string>();
  const addTarget = (r: RecordInfo): void => {
    if (r.type === QType.NS) targets.add(nameAt(buf, r.rdStart));
    else if (r.type === QType.MX) targets.add(nameAt(buf, r.rdStart + 2));
    else if (r.type === QType.SRV) targets.add(nameAt(buf, r.rdStart + 6));
  };
  recs.forEach((r, i) => {
    if (r.section === Section.Answer && keep[i]) addTarget(r);
  });
  // The zone: the deepest SOA/NS owner in authority that is an ancestor of a chain name.
  let zone: string | null = null;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.section !== Section.Authority || (r.type !== QType.SOA && r.type !== QType.NS)) continue;
    const owner = owners[i]!;
    for (const c of chain) if (isSubdomain(c, owner) && (zone === null || owner.length > zone.length)) zone = owner;
  }
  recs.forEach((r, i) => {
    if (r.section !== Section.Authority || zone === null) return;
    if (isSubdomain(owners[i]!, zone)) {
      keep[i] = true;
      addTarget(r);
    }
  });
  recs.forEach((r, i) => {
    if (r.section !== Section.Additional) return;
    if (r.type === QType.OPT) keep[i] = true;
    else if (targets.has(owners[i]!)) keep[i] = true;
  });
  return keep;
}

/** The usual authoritative reply has a few dozen records at most. */
const FAST_PATH_MAX_RECORDS = 64;

/** Whether `off` starts a label of the (uncompressed) question name: a suffix of QNAME. */
function isQuestionSuffix(buf: Uint8Array, off: number, questionEnd: number): boolean {
  for (let at = 12; at < questionEnd - 4 && buf[at] !== 0; at += buf[at]! + 1) {
    if (buf[at]! & 0xc0) return false;
    if (at === off) return true;
  }
  return false;
}

/**
 * The usual authoritative reply needs no name decoding, as every record provably belongs:
 * - answers are owned by a pointer to the question name (offset 12) and are of the question's
 *   type (or signatures of it), so not CNAME/DNAME;
 * - authority records are NS or SOA, all owned by one pointer to a label of the question name
 *   (an ancestor of QNAME: the zone keepList would pick, so all of them are kept);
 * - additional records are OPT, or owned by a pointer to the RDATA of one of those NS records
 *   (the glue of a kept name server).
 * Anything else takes the full path of keepList.
 */
export function provablyClean(buf: Uint8Array, scan: MessageScan, qtype = questionType(buf, scan)): boolean {
  const recs = scan.records;
  // Each glue record is matched against every NS record: quadratic, so a hostile reply of
  // thousands of records (TCP allows 64 KiB) takes keepList's path, which is linear.
  if (recs.length > FAST_PATH_MAX_RECORDS) return false;
  let zoneOwner = -1;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.type === QType.OPT) continue;
    if (buf[r.start]! < 0xc0) return false;
    const target = ((buf[r.start]! & 0x3f) << 8) | buf[r.start + 1]!;
    if (r.section === Section.Answer) {
      if (target !== 12 || (r.type !== qtype && r.type !== QType.RRSIG) || r.type === QType.CNAME || r.type === QType.DNAME) return false;
    } else if (r.section === Section.Authority) {
      if (r.type !== QType.NS && r.type !== QType.SOA) return false;
      if (zoneOwner < 0) {
        if (!isQuestionSuffix(buf, target, scan.questionEnd)) return false;
        zoneOwner = target;
      } else if (target !== zoneOwner) return false;
    } else if (!isNsTarget(recs, target)) return false;
  }
  return true;
}

function isNsTarget(recs: readonly RecordInfo[], target: number): boolean {
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.section === Section.Authority && r.type === QType.NS && r.rdStart === target) return true;
  }
  return false;
}

/**
 * Returns the scan unchanged when every record belongs, else the message rebuilt with only
 * those that do (on the wire: see rebuildMessage); a string when the reply is unusable (its
 * CNAME chain loops or is too long).
 */
export function scrubReply(buf: Buffer, scan: MessageScan, qname: string): { buf: Buffer; scan: MessageScan; dropped: number } | string {
  const qtype = questionType(buf, scan);
  if (provablyClean(buf, scan, qtype)) return { buf, scan, dropped: 0 };
  const owners = ownerNames(buf, scan.records);
  const chain = followChain(buf, scan.records, owners, qname);
  if (chain.problem !== null) return chain.problem;
  const keep = keepRecords(buf, scan.records, owners, chain.names, qtype);
  const dropped = keep.filter((k) => !k).length;
  if (dropped === 0) return { buf, scan, dropped };
  const wire = rebuildMessage(buf, scan, keep);
  const again = scanMessage(wire);
  if (typeof again === 'string') throw new Error(`scrubbed reply is malformed: ${again}`);
  return { buf: wire, scan: again, dropped };
}
