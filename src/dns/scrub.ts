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
function keepList(buf: Uint8Array, scan: MessageScan, qname: string): boolean[] {
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

/**
 * The common reply needs no name decoding: every record sits in the answer section, is not a
 * CNAME or DNAME, and its owner is a pointer to the question name (offset 12), so all of them
 * belong (a non-OPT additional or any authority record takes the full path).
 */
function onlyQuestionOwners(buf: Uint8Array, scan: MessageScan): boolean {
  for (const r of scan.records) {
    if (r.type === QType.OPT) continue;
    if (r.section !== Section.Answer || r.type === QType.CNAME || r.type === QType.DNAME) return false;
    if (buf[r.start] !== 0xc0 || buf[r.start + 1] !== 12) return false;
  }
  return true;
}

/**
 * Returns the scan unchanged when every record belongs, else the message rebuilt with only
 * those that do (on the wire: see rebuildMessage).
 */
export function scrubReply(buf: Buffer, scan: MessageScan, qname: string): { buf: Buffer; scan: MessageScan; dropped: number } {
  if (onlyQuestionOwners(buf, scan)) return { buf, scan, dropped: 0 };
  const keep = keepList(buf, scan, qname);
  const dropped = keep.filter((k) => !k).length;
  if (dropped === 0) return { buf, scan, dropped };
  const wire = rebuildMessage(buf, scan, keep);
  const again = scanMessage(wire);
  if (typeof again === 'string') throw new Error(`scrubbed reply is malformed: ${again}`);
  return { buf: wire, scan: again, dropped };
}
