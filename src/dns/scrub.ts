// Scrubs an upstream reply of records that do not belong to the question (RFC 5452 section 6,
// as Unbound's scrubber): whatever a poisoner slips in never reaches a client or the cache.

import { QType } from './constants.js';
import { isSubdomain, readName } from './name.js';
import { rebuildMessage, scanMessage, Section, type MessageScan, type RecordInfo } from './message.js';

function nameAt(buf: Uint8Array, off: number): string {
  return readName(buf, off)?.name ?? '';
}

/** Indexes of the records to keep. Answer: the CNAME/DNAME chain from QNAME; authority: the
 *  zone above the chain's end; additional: addresses of names the kept records point to. */
export function keepList(buf: Uint8Array, scan: MessageScan, qname: string): boolean[] {
  const recs = scan.records;
  const keep = new Array<boolean>(recs.length).fill(false);
  const chain = new Set<string>([qname]);
  // Answer records come in chain order in practice; two passes tolerate a reordered chain.
  for (let pass = 0; pass < 2; pass++) {
    recs.forEach((r, i) => {
      if (r.section !== Section.Answer || keep[i]) return;
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
 * - answers are owned by a pointer to the question name (offset 12) and are not CNAME/DNAME;
 * - authority records are NS or SOA, all owned by one pointer to a label of the question name
 *   (an ancestor of QNAME: the zone keepList would pick, so all of them are kept);
 * - additional records are OPT, or owned by a pointer to the RDATA of one of those NS records
 *   (the glue of a kept name server).
 * Anything else takes the full path of keepList.
 */
export function provablyClean(buf: Uint8Array, scan: MessageScan): boolean {
  const recs = scan.records;
  let zoneOwner = -1;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    if (r.type === QType.OPT) continue;
    if (buf[r.start]! < 0xc0) return false;
    const target = ((buf[r.start]! & 0x3f) << 8) | buf[r.start + 1]!;
    if (r.section === Section.Answer) {
      if (target !== 12 || r.type === QType.CNAME || r.type === QType.DNAME) return false;
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
 * those that do (on the wire: see rebuildMessage).
 */
export function scrubReply(buf: Buffer, scan: MessageScan, qname: string): { buf: Buffer; scan: MessageScan; dropped: number } {
  if (provablyClean(buf, scan)) return { buf, scan, dropped: 0 };
  const keep = keepList(buf, scan, qname);
  const dropped = keep.filter((k) => !k).length;
  if (dropped === 0) return { buf, scan, dropped };
  const wire = rebuildMessage(buf, scan, keep);
  const again = scanMessage(wire);
  if (typeof again === 'string') throw new Error(`scrubbed reply is malformed: ${again}`);
  return { buf: wire, scan: again, dropped };
}
