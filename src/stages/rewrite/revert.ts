// Turns a reply for the rewritten name Y into the reply for the client's name X: every name at or
// under Y renamed under X, DNSSEC records and the additional section dropped, a denial's SOA put
// where a downstream cache can use it, AD cleared, the client's spelling of the question.

import { Flag, HEADER_SIZE, QType, Rcode } from '../../lib/dns/constants.js';
import { rebuildMessage, scanMessage, Section, type MessageScan } from '../../lib/dns/message.js';
import { isSubdomain, keyToWire, parentName, readName } from '../../lib/dns/name.js';
import { mapperFromRules, renameMessage, type NameMapper } from '../../lib/dns/rename.js';

/** How one rule's replies are turned back, built once per rule. */
export interface Reversal {
  /** Every name at or under the rule's `to` (Y, or the Y subtree) onto the same under `from`. */
  readonly mapper: NameMapper;
  /** For a suffix rule, `from`: X's subtree is the zone of its denials; null for an exact rule. */
  readonly suffixFrom: string | null;
}

export function reversalOf(rule: { readonly from: string; readonly to: string; readonly suffix: boolean }): Reversal {
  // An exact rule renames Y's subtree too: a CNAME to x.Y, say, must not show Y to the client.
  return { mapper: mapperFromRules([{ from: rule.to, to: rule.from, suffix: true }]), suffixFrom: rule.suffix ? rule.from : null };
}

const NSEC = 47;
const NSEC3 = 50;
/**
 * Dropped from rewritten replies: they sign or deny Y's names (RRSIG's signer, NSEC's next name
 * are not renamed, and would show Y), and no longer verify once renamed anyway.
 */
const DNSSEC_TYPES = new Set<number>([QType.RRSIG, NSEC, NSEC3]);

function isAncestorOrSelf(zone: string, name: string): boolean {
  return isSubdomain(name, zone);
}

/** `name` at or under `from`, moved under `to`. */
function swap(name: string, from: string, to: string): string {
  if (name === from) return to;
  if (from === '.') return to === '.' ? name : `${name}.${to}`;
  const prefix = name.slice(0, name.length - from.length - 1);
  return to === '.' ? prefix : `${prefix}.${to}`;
}

/**
 * The denial's SOA (RFC 2308: a cache keeps a negative answer as long as the SOA says) owned
 * by `zone` rather than `owner`, with its MNAME and RNAME moved from under `owner` to under
 * `zone` (ns.novalocal -> ns.example.org): a SOA of Y's zone would tell the client the test
 * zone's name, and a resolver may ignore a denial whose SOA is no ancestor of the question.
 * `flat` has no compression pointers (rebuildMessage), so records can be cut and spliced.
 */
function moveSoa(flat: Buffer, start: number, ttlOffset: number, rdStart: number, rdLength: number, zone: string): Buffer | string {
  const owner = readName(flat, start);
  const mname = readName(flat, rdStart);
  const rname = mname === null ? null : readName(flat, mname.end);
  if (owner === null || mname === null || rname === null) return 'malformed SOA';
  const move = (n: string): string => (isSubdomain(n, owner.name) ? swap(n, owner.name, zone) : n);
  let names: Buffer;
  try {
    names = Buffer.concat([keyToWire(move(mname.name)), keyToWire(move(rname.name))]);
  } catch {
    return `the SOA's names under ${JSON.stringify(zone)} would exceed 255 octets`;
  }
  const len = Buffer.alloc(2);
  len.writeUInt16BE(names.length + 20);
  return Buffer.concat([keyToWire(zone), flat.subarray(ttlOffset - 4, ttlOffset + 4), len, names, flat.subarray(rdStart + rdLength - 20, rdStart + rdLength)]);
}

/**
 * The reply `wire` to the rewritten question, as the client `x` (canonical) must see it; its
 * question takes octets 12 to `qEnd` of `client` (the client's spelling). `wire` may be a whole
 * reply or a template (ID zero, no OPT); it is never changed. Returns why it cannot be done
 * (a renamed name over 255 octets, a malformed reply): the caller answers SERVFAIL.
 */
export function revertReply(wire: Buffer, client: Uint8Array, qEnd: number, x: string, rev: Reversal): Buffer | string {
  let buf = wire;
  let scan = scanMessage(buf);
  if (typeof scan === 'string') return `reply ${scan}`;
  // Answers and a denial's SOA only: the authority's NS and the additional section describe Y's
  // zone (its servers, their addresses), which the client must not learn and cannot use for X.
  const keep = scan.records.map((r) => r.type === QType.OPT || (!DNSSEC_TYPES.has(r.type) && (r.section === Section.Answer || (r.section === Section.Authority && r.type === QType.SOA))));
  if (keep.includes(false)) {
    buf = rebuildMessage(buf, scan, keep);
    scan = scanMessage(buf);
    if (typeof scan === 'string') return `rebuilt reply ${scan}`;
  }
  const renamed = renameMessage(buf, rev.mapper, scan);
  if (typeof renamed === 'string') return renamed;
  let out = renamed;
  const q = readName(out, HEADER_SIZE);
  if (q === null || q.name !== x || q.end !== qEnd - 4) return `reply's question is not the rewritten one`;
  // Only a reply without answers may be a denial about X (the header says; RCODE checked again
  // with its extended bits below): the usual positive reply is not scanned a second time.
  if (out[6] === 0 && out[7] === 0) {
    const s = scanMessage(out);
    if (typeof s === 'string') return `renamed reply ${s}`;
    const moved = denialSoa(out, s, x, rev);
    if (typeof moved === 'string') return moved;
    out = moved;
  }
  // Never the buffer given (a template the cache may still refer to); renameMessage and the
  // rebuilds return new buffers, and return their input only when nothing changed.
  if (out === wire) out = Buffer.from(out);
  for (let i = HEADER_SIZE; i < qEnd; i++) out[i] = client[i]!;
  // RFC 4035 3.2.3: AD says the answer was validated, which a renamed one cannot be.
  out[3] = out[3]! & ~Flag.AD;
  return out;
}

/**
 * For a denial about X itself (NXDOMAIN or NODATA; the caller passes only replies without
 * answer records): each SOA whose owner (once renamed) is neither X nor an ancestor of X is
 * owned by X's denial zone instead: the X subtree's apex for a suffix rule, X's parent for an
 * exact rule. A denial at the end of a CNAME
 * chain is about the chain's last name, whose SOA (renamed if in Y's subtree) stays as it is.
 */
function denialSoa(buf: Buffer, scan: MessageScan, x: string, rev: Reversal): Buffer | string {
  const rcode = scan.rcode;
  if (rcode !== Rcode.NXDOMAIN && rcode !== Rcode.NOERROR) return buf;
  const zone = rev.suffixFrom ?? (parentName(x) ?? '.');
  const fix = scan.records.map((r) => r.section === Section.Authority && r.type === QType.SOA && r.klass === 1 && !isAncestorOrSelf(readName(buf, r.start)?.name ?? '', x));
  if (!fix.includes(true)) return buf;
  const flat = rebuildMessage(buf, scan, scan.records.map(() => true));
  const fs = scanMessage(flat);
  if (typeof fs === 'string') return `rebuilt reply ${fs}`;
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < fs.records.length; i++) {
    if (!fix[i]) continue;
    const r = fs.records[i]!;
    const soa = moveSoa(flat, r.start, r.ttlOffset, r.rdStart, r.rdLength, zone);
    if (typeof soa === 'string') return soa;
    parts.push(flat.subarray(at, r.start), soa);
    at = r.rdStart + r.rdLength;
  }
  parts.push(flat.subarray(at));
  return Buffer.concat(parts);
}
