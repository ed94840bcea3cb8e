// Micro benchmark of the EDNS Client Subnet work a query with ECS adds: the option appended to a
// reply, a scoped cache entry matched, the subnet made for an upstream query. Run: node dist/bench/ecs.js
// (ECS_ITERATIONS and ECS_ROUNDS shrink it for a smoke run; prints CPU time beside wall time).

import dnsPacket from 'dns-packet';
import { clientSubnet, subnetKey, subnetMatches, truncateSubnet, withEcsOption } from '../src/lib/dns/ecs.js';
import type { ClientSubnet } from '../src/lib/dns/query.js';

const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? '');
  return Number.isInteger(v) && v > 0 ? v : fallback;
};
const ROUNDS = num('ECS_ROUNDS', 7);
const ITERATIONS = num('ECS_ITERATIONS', 200_000);

/** A reply as linedns renders it: two A records, its own bare OPT last. */
const reply = dnsPacket.encode({
  type: 'response',
  id: 1,
  flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
  questions: [{ type: 'A', name: 'www.example.org', class: 'IN' }],
  answers: [
    { type: 'A', name: 'www.example.org', ttl: 60, data: '192.0.2.1' },
    { type: 'A', name: 'www.example.org', ttl: 60, data: '192.0.2.2' },
  ],
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer],
});
const ecs: ClientSubnet = { family: 1, sourcePrefix: 24, scopePrefix: 0, address: Uint8Array.from([198, 51, 100, 0]) };
const key = subnetKey(1, ecs.address, 24);
const prefixes = { ipv4: 24, ipv6: 56 };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(what: string, body: () => number): void {
  const wall: number[] = [];
  const cpu: number[] = [];
  let sink = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) sink += body();
    wall.push(Number(process.hrtime.bigint() - t0) / ITERATIONS);
    const c = process.cpuUsage(c0);
    cpu.push(((c.user + c.system) * 1000) / ITERATIONS);
  }
  // Keeps the loop from being optimised away.
  if (sink < 0) throw new Error('unreachable');
  console.log(`${what}: ${median(wall).toFixed(0)} ns wall, ${median(cpu).toFixed(0)} ns CPU`);
}

const out = withEcsOption(reply, ecs, 24);
if (out.length !== reply.length + 11) throw new Error(`the option was not appended (${reply.length} -> ${out.length})`);
console.log(`reply: ${reply.length} octets, ${out.length} with the ECS option; ${ITERATIONS} x ${ROUNDS} rounds`);
time('withEcsOption (reply to a query with ECS)', () => withEcsOption(reply, ecs, 24).length);
time('subnetMatches (a scoped cache entry met in a lookup)', () => (subnetMatches(key, ecs) ? 1 : 0));
time('clientSubnet + truncateSubnet (per forwarded query, clientSubnet on, stub client)', () => truncateSubnet(clientSubnet('198.51.100.77', null, false)!, prefixes).sourcePrefix);
