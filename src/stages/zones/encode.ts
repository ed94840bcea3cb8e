// Writes a zone's answer as a wire template once (as records' encode.ts does), then only stamped
// per query: the question copied from the client, owners equal to it as a pointer to it.

import { Flag, HEADER_SIZE } from '../../lib/dns/constants.js';
import { scanMessage } from '../../lib/dns/message.js';
import { keyToWire } from '../../lib/dns/name.js';
import { u16, u32 } from '../../lib/dns/octets.js';
import { templateFromScan, type WireTemplate } from '../../lib/dns/template.js';
import type { Placed, ZoneResult } from './store.js';

/** A compression pointer to the question name at offset 12. */
const QNAME_POINTER = Buffer.from([0xc0, HEADER_SIZE]);
const CLASS_IN = u16(1);

/**
 * One record. An owner equal to the question (a wildcard's synthesis too) points at it, so the
 * reply carries the client's own octets and spelling; RDATA is the zone file's, uncompressed.
 */
function record(p: Placed, qname: string): Buffer {
  const owner = p.owner === qname ? QNAME_POINTER : keyToWire(p.owner);
  return Buffer.concat([owner, u16(p.type), CLASS_IN, u32(p.ttl), u16(p.rdata.length), p.rdata]);
}

/**
 * The reply to the question in `raw` (up to `questionEnd`) for an answer from a zone: AA set, as
 * the zone is ours. `qname` is the question's key, which the owners were matched by.
 */
export function encodeZoneAnswer(raw: Uint8Array, questionEnd: number, qname: string, result: Extract<ZoneResult, { kind: 'answer' }>): WireTemplate {
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(Flag.QR | Flag.AA | (result.rcode & 0xf), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(result.answers.length, 6);
  header.writeUInt16BE(result.authority.length, 8);
  const wire = Buffer.concat([
    header,
    raw.subarray(HEADER_SIZE, questionEnd),
    ...result.answers.map((a) => record(a, qname)),
    ...result.authority.map((a) => record(a, qname)),
  ]);
  const scan = scanMessage(wire);
  if (typeof scan === 'string') throw new Error(`zone answer for ${qname} encodes badly: ${scan}`);
  return templateFromScan(wire, scan, true);
}
