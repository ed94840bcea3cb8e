// Turns a local lookup result into a reusable wire template (encoded once, then memoised).
// dns-packet encodes; every value it gets was validated at config load (PITFALLS.md).

import dnsPacket from 'dns-packet';
import { Flag, typeName } from '../dns/constants.js';
import { scanMessage } from '../dns/message.js';
import { templateFromScan, type WireTemplate } from '../dns/template.js';
import type { AnswerRecord, LocalResult } from './store.js';

type Packet = Parameters<typeof dnsPacket.encode>[0];
type Answer = NonNullable<Packet['answers']>[number];

function packetType(type: number): string {
  const name = typeName(type);
  return name.startsWith('TYPE') ? `UNKNOWN_${type}` : name;
}

function toAnswer(a: AnswerRecord): Answer {
  return { name: a.name, type: packetType(a.record.type), class: 'IN', ttl: a.record.ttl, data: a.record.data } as Answer;
}

/** Encodes a local answer for question (qname, qtype) with AA set. */
export function encodeLocal(qname: string, qtype: number, result: Exclude<LocalResult, { kind: 'none' }>): WireTemplate {
  const packet = {
    type: 'response',
    id: 0,
    flags: Flag.AA | (result.rcode & 0xf),
    questions: [{ name: qname === '.' ? '.' : qname, type: packetType(qtype), class: 'IN' }],
    answers: result.kind === 'answer' ? result.answers.map(toAnswer) : [],
    authorities: result.authority.map(toAnswer),
  } as Packet;
  const wire = dnsPacket.encode(packet);
  const scan = scanMessage(wire);
  if (typeof scan === 'string') throw new Error(`local answer for ${qname} encodes badly: ${scan}`);
  return templateFromScan(wire, scan);
}
