// Scrubs an upstream reply of records that do not belong to the question (RFC 5452 section 6,
// as Unbound's scrubber): whatever a poisoner slips in never reaches a client or the cache.

import { QType } from './constants.js';
import { isSubdomain, readName } from './name.js';
import { rebuildMessage, scanMessage, Section, type MessageScan, type RecordInfo } from './message.js';

function nameAt(buf: Uint8Array, off: number): string {
  return readName(buf, off)?.name ?? '';
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

/**
 * Follows the CNAME chain from QNAME through the answer section: a reason when it loops or has
 * more than MAX_CNAME_CHAIN links (the reply is then unusable), else null.
 */
export function cnameChainProblem(buf: Uint8Array, scan: MessageScan, qname: string): string | null {
  const seen = new Set<string>([qname]);
  let at = qname;
  for (let hops = 0; ; hops++) {
    let next: string | null = null;
    for (const r of scan.records) {
      if (r.section === Section.Answer && r.type === QType.CNAME && nameAt(buf, r.start) === at) {
        next = nameAt(buf, r.rdStart);
        break;
      }
    }
    if (next === null) return null;
    if (seen.has(next)) return `CNAME loop at ${next}`;
    if (hops + 1 > MAX_CNAME_CHAIN) return `CNAME chain longer than ${MAX_CNAME_CHAIN}`;
    seen.add(next);
    at = next;
  }
}

/** Indexes of the records to keep. Answer: the CNAME/DNAME chain from QNAME, of types that
 *  answer QTYPE; authority: the zone above the chain's end; additional: addresses of names the
 *  kept records point to. */
export function keepList(buf: Uint8Array, scan: MessageScan, qname: string, qtype: number): boolean[] {
  const recs = scan.records;
  const keep = new Array<boolean>(recs.length).fill(false);
  const chain = new Set<string>([qname]);
  // Answer records come in chain order in practice; two passes tolerate a reordered chain.
  for (let pass = 0; pass < 2; pass++) {
    recs.forEach((r, i) => {
      if (r.section !== Section.Answer || keep[i] || !answersType(r.type, qtype)) return;
      const owner = nameAt(buf, r.start);
      if (r.type === QType.DNAME) {
        for (const c of chain) if (c !== owner && isSubdomain(c, owner)) keep[i] = true;
        return;
      }
      if (!chain.has(owner)) return;
      keep[i] = true;
      if (r.type === QType.CNAME) chain.add(nameAt(buf, r.rdStart));
    });
  }
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
  for (const r of recs) {
    if (r.section !== Section.Authority || (r.type !== QType.SOA && r.type !== QType.NS)) continue;
    const owner = nameAt(buf, r.start);
    for (const c of chain) if (isSubdomain(c, owner) && (zone === null || owner.length > zone.length)) zone = owner;
  }
  recs.forEach((r, i) => {
    if (r.section !== Section.Authority || zone === null) return;
    if (isSubdomain(nameAt(buf, r.start), zone)) {
      keep[i] = true;
      addTarget(r);
    }
  });
  recs.forEach((r, i) => {
    if (r.section !== Section.Additional) return;
    if (r.type === QType.OPT) keep[i] = true;
    else if (targets.has(nameAt(buf, r.start))) keep[i] = true;
  });
  return keep;
}

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
export function provablyClean(buf: Uint8Array, scan: MessageScan): boolean {
  const recs = scan.records;
  const qtype = (buf[scan.questionEnd - 4]! << 8) | buf[scan.questionEnd - 3]!;
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
  if (provablyClean(buf, scan)) return { buf, scan, dropped: 0 };
  const problem = cnameChainProblem(buf, scan, qname);
  if (problem !== null) return problem;
  const qtype = (buf[scan.questionEnd - 4]! << 8) | buf[scan.questionEnd - 3]!;
  const keep = keepList(buf, scan, qname, qtype);
  const dropped = keep.filter((k) => !k).length;
  if (dropped === 0) return { buf, scan, dropped };
  const wire = rebuildMessage(buf, scan, keep);
  const again = scanMessage(wire);
  if (typeof again === 'string') throw new Error(`scrubbed reply is malformed: ${again}`);
  return { buf: wire, scan: again, dropped };
}
