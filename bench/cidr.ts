// CIDR lookup cost with 10 and with 10,000 CIDRs, timing LineTable.classify from dist/src: a
// prefix trie costs the same for both, a scan grows a thousandfold.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { median } from './measure.js';
import { prng, smartLineConfig } from './workloads.js';

interface LineTableLike {
  classify(address: string): unknown;
}
type LineTableCtor = new (config: Record<string, readonly string[]>) => LineTableLike;

export interface CidrResult {
  small: number;
  large: number;
  /** Nanoseconds per classify() of a different address each time, median of rounds. */
  smallNs: number;
  largeNs: number;
  /** Same, one repeated address (what a busy client costs, memo included). */
  smallRepeatNs: number;
  largeRepeatNs: number;
}

function addresses(count: number): string[] {
  const rnd = prng(99);
  // Mostly inside the ranges the filler lines cover (100.0.0.0/8), so lookups walk deep.
  return Array.from({ length: count }, () => {
    const a = rnd() < 0.9 ? 100 : 1 + Math.floor(rnd() * 220);
    return `${a}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}.${Math.floor(rnd() * 256)}`;
  });
}

function timeNs(table: LineTableLike, addrs: readonly string[], rounds: number): number {
  const per: number[] = [];
  let sink = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < addrs.length; i++) if (table.classify(addrs[i]!) !== undefined) sink++;
    per.push(Number(process.hrtime.bigint() - t0) / addrs.length);
  }
  // Keeps the loop from being optimised away.
  if (sink < 0) throw new Error('unreachable');
  return median(per);
}

export async function cidrStep(root: string): Promise<CidrResult> {
  const mod = (await import(pathToFileURL(join(root, 'dist/src/stages/smartline/lines.js')).href)) as { LineTable?: LineTableCtor };
  if (typeof mod.LineTable !== 'function') throw new Error('dist/src/stages/smartline/lines.js exports no LineTable');
  const small = 10;
  const large = 10_000;
  const tSmall = new mod.LineTable(smartLineConfig(small, 3, 21));
  const tLarge = new mod.LineTable(smartLineConfig(large, 100, 22));
  // More distinct addresses than any per-address memo is likely to hold.
  const addrs = addresses(200_000);
  const one = ['100.1.2.3'];
  // Warm both first so the JIT has settled before either is timed; then alternate.
  timeNs(tSmall, addrs, 2);
  timeNs(tLarge, addrs, 2);
  const s: number[] = [];
  const l: number[] = [];
  for (let i = 0; i < 3; i++) {
    s.push(timeNs(tSmall, addrs, 3));
    l.push(timeNs(tLarge, addrs, 3));
  }
  const repeat = (t: LineTableLike): number => timeNs(t, Array.from({ length: 100_000 }, () => one[0]!), 5);
  return { small, large, smallNs: median(s), largeNs: median(l), smallRepeatNs: repeat(tSmall), largeRepeatNs: repeat(tLarge) };
}
