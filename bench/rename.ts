// Micro benchmark of renameMessage: nanoseconds per reply renamed, and per reply left alone, for a
// typical compressed 3-record answer (CNAME + 2 A) with EDNS. Run: node dist/bench/rename.js
// (about 30 s; prints CPU time too, which a busy machine inflates less than wall time).

import dnsPacket from 'dns-packet';
import { scanMessage, type MessageScan } from '../src/lib/dns/message.js';
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

interface Timing {
  /** Wall-clock nanoseconds per call, median of rounds. */
  wall: number;
  /** CPU (user + system) nanoseconds per call: what a busy machine inflates less. */
  cpu: number;
}

function nsPer(wire: Buffer, map: NameMapper, scan?: MessageScan): Timing {
  const wall: number[] = [];
  const cpu: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) {
      const out = renameMessage(wire, map, scan);
      if (typeof out === 'string') throw new Error(out);
      sink += out.length;
    }
    wall.push(Number(process.hrtime.bigint() - t0) / ITERATIONS);
    const c = process.cpuUsage(c0);
    cpu.push(((c.user + c.system) * 1000) / ITERATIONS);
  }
  // Keeps the loop from being optimised away.
  if (sink < 0) throw new Error('unreachable');
  return { wall: median(wall), cpu: median(cpu) };
}

function show(t: Timing): string {
  return `${t.wall.toFixed(0)} ns wall, ${t.cpu.toFixed(0)} ns CPU`;
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
console.log(`renamed:   ${show(nsPer(wire, back))} per reply (medians of ${ROUNDS} x ${ITERATIONS})`);
const scan = scanMessage(wire);
if (typeof scan === 'string') throw new Error(scan);
console.log(`  scanned:  ${show(nsPer(wire, back, scan))} per reply (the caller's scanMessage passed in)`);
console.log(`untouched: ${show(nsPer(wire, elsewhere))} per reply (no rule matches: same buffer back)`);
