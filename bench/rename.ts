// Micro benchmark of renameMessage: nanoseconds per reply renamed, and per reply left alone, for a
// typical compressed 3-record answer (CNAME + 2 A) with EDNS. Run: node dist/bench/rename.js

import dnsPacket from 'dns-packet';
import { mapperFromRules, renameMessage, type NameMapper } from '../src/lib/dns/rename.js';

const ROUNDS = 7;
const ITERATIONS = 100_000;

/** What the upstream sends for foo.novalocal, compressed as a server would. */
function upstreamReply(): Buffer {
  const plain = dnsPacket.encode({
    type: 'response',
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ type: 'A', name: 'foo.upstream', class: 'IN' }],
    answers: [
      { type: 'CNAME', name: 'foo.upstream', ttl: 300, data: 'bar.upstream' },
      { type: 'A', name: 'bar.upstream', ttl: 60, data: '10.0.0.1' },
      { type: 'A', name: 'bar.upstream', ttl: 60, data: '10.0.0.2' },
    ],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }],
  });
  // dns-packet writes names whole; renaming them once leaves the reply compressed.
  const out = renameMessage(plain, mapperFromRules([{ from: 'upstream', to: 'novalocal', suffix: true }]));
  if (typeof out === 'string') throw new Error(out);
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function nsPer(wire: Buffer, map: NameMapper): number {
  const per: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) {
      const out = renameMessage(wire, map);
      if (typeof out === 'string') throw new Error(out);
      sink += out.length;
    }
    per.push(Number(process.hrtime.bigint() - t0) / ITERATIONS);
  }
  // Keeps the loop from being optimised away.
  if (sink < 0) throw new Error('unreachable');
  return median(per);
}

const wire = upstreamReply();
const back = mapperFromRules([
  { from: 'foo.novalocal', to: 'www.example.org', suffix: false },
  { from: 'novalocal', to: 'prod.example.com', suffix: true },
]);
const result = renameMessage(wire, back);
if (typeof result === 'string') throw new Error(result);
const elsewhere = mapperFromRules([{ from: 'unrelated.test', to: 'other.test', suffix: true }]);
// Warm up both paths before either is timed.
nsPer(wire, back);
nsPer(wire, elsewhere);
console.log(`reply: ${wire.length} octets in, ${result.length} out (3 answers + OPT)`);
console.log(`renamed:   ${nsPer(wire, back).toFixed(0)} ns per reply (median of ${ROUNDS} x ${ITERATIONS})`);
console.log(`untouched: ${nsPer(wire, elsewhere).toFixed(0)} ns per reply (no rule matches: same buffer back)`);
