// Turns a local lookup result into a reusable wire template (encoded once, then memoised).
// Written on the wire directly: names are octets (the question's own, or keyToWire of a key).

import { Flag, HEADER_SIZE, QType } from '../../lib/dns/constants.js';
import { scanMessage } from '../../lib/dns/message.js';
import { keyToWire } from '../../lib/dns/name.js';
import { characterString, u16, u32 } from '../../lib/dns/octets.js';
import { templateFromScan, type WireTemplate } from '../../lib/dns/template.js';
import { parseIp } from '../../lib/net/address.js';
import type { AnswerRecord, LocalRecord, LocalResult } from './store.js';

/** A compression pointer to the question name at offset 12. */
const QNAME_POINTER = Buffer.from([0xc0, HEADER_SIZE]);

/** RDATA of the record types records.json allows; the values were validated at config load. */
function rdata(r: LocalRecord): Buffer {
  const d = r.data;
  switch (r.type) {
    case QType.A:
    case QType.AAAA: {
      const ip = parseIp(d as string);
      if (ip === null || (r.type === QType.A && ip.length !== 4)) throw new Error(`bad address ${String(d)}`);
      if (r.type === QType.A || ip.length === 16) return Buffer.from(ip);
      // parseIp gives an IPv4-mapped address (::ffff:a.b.c.d) as its four IPv4 octets.
      return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), ip]);
    }
    case QType.CNAME:
    case QType.NS:
    case QType.PTR:
      return keyToWire(d as string);
    case QType.MX: {
      const mx = d as { preference: number; exchange: string };
      return Buffer.concat([u16(mx.preference), keyToWire(mx.exchange)]);
    }
    case QType.SRV: {
      const srv = d as { priority: number; weight: number; port: number; target: string };
      return Buffer.concat([u16(srv.priority), u16(srv.weight), u16(srv.port), keyToWire(srv.target)]);
    }
    case QType.SOA: {
      const soa = d as { mname: string; rname: string; serial?: number; refresh?: number; retry?: number; expire?: number; minimum?: number };
      return Buffer.concat([keyToWire(soa.mname), keyToWire(soa.rname), u32(soa.serial ?? 0), u32(soa.refresh ?? 0), u32(soa.retry ?? 0), u32(soa.expire ?? 0), u32(soa.minimum ?? 0)]);
    }
    case QType.TXT:
      return Buffer.concat((d as string[]).map(characterString));
    case QType.CAA: {
      const caa = d as { flags: number; tag: string; value: string };
      return Buffer.concat([Buffer.from([caa.flags & 0xff]), characterString(caa.tag), Buffer.from(caa.value, 'utf8')]);
    }
    default:
      throw new Error(`no encoder for local type ${r.type}`);
  }
}

/**
 * One resource record. An owner equal to the question is a pointer to it, so the reply carries
 * the client's own octets and spelling, which renderTemplate copies into every copy it stamps.
 */
function record(a: AnswerRecord, qname: string): Buffer {
  const rd = rdata(a.record);
  const owner = a.name === qname ? QNAME_POINTER : keyToWire(a.name);
  return Buffer.concat([owner, u16(a.record.type), u16(1), u32(a.record.ttl), u16(rd.length), rd]);
}

/**
 * Encodes a local answer with AA set. `raw` is the query and `questionEnd` the end of its
 * question, copied as it stands; `qname` is the name's key, which the records were matched by.
 */
export function encodeLocal(raw: Uint8Array, questionEnd: number, qname: string, result: Extract<LocalResult, { kind: 'answer' | 'action' }>): WireTemplate {
  const answers = result.kind === 'answer' ? result.answers : [];
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(Flag.QR | Flag.AA | (result.rcode & 0xf), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(result.authority.length, 8);
  const wire = Buffer.concat([
    header,
    raw.subarray(HEADER_SIZE, questionEnd),
    ...answers.map((a) => record(a, qname)),
    ...result.authority.map((a) => record(a, qname)),
  ]);
  const scan = scanMessage(wire);
  if (typeof scan === 'string') throw new Error(`local answer for ${qname} encodes badly: ${scan}`);
  // Local data is ours: AA, where relayed and cached upstream answers never carry it.
  const t = templateFromScan(wire, scan, true);
  return t;
}
