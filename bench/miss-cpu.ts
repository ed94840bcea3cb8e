// `node dist/bench/miss-cpu.js BASELINE`: CPU per cache miss of this build and a baseline build,
// at a fixed offered load below saturation, rounds alternating. Run inside `unshare --net`.
//
// Why: qps at saturation on the shared 2-core machine drifts by half within one run (the cache
// filling, the neighbours), so a same-run qps A/B cannot resolve 5% on misses. CPU seconds per
// query at a rate both builds sustain depend far less on that: each build gets the same queries
// at the same rate, its process's CPU time (user + system, /proc) is read before and after.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dnsperf } from './dnsperf.js';
import { startLineDns, startNsd, type PeerEnv, type Running } from './peers.js';
import { cpuSeconds, killAllNow, stopAll } from './proc.js';
import { takeSnapshot } from './snapshot.js';
import { writeDataset, writeUniqueQueries } from './workloads.js';

const num = (name: string, d: number): number => {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : d;
};
/** Offered load, queries a second: below what either build saturates at here (~20,000). */
const RATE = num('MC_RATE', 8000);
const SECONDS = num('MC_SECONDS', 6);
const ROUNDS = num('MC_ROUNDS', 6);
/** Fills the 100,000-entry cache first, so measured misses also pay for eviction. */
const WARMUP = num('MC_WARMUP', 110_000);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const baseline = process.argv[2];
  if (!baseline) throw new Error('usage: node dist/bench/miss-cpu.js BASELINE-CHECKOUT (built)');
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const dir = mkdtempSync(join(os.tmpdir(), 'linedns-misscpu-'));
  try {
    const head = takeSnapshot(root, dir);
    const base = takeSnapshot(resolve(baseline), join(dir, 'base'));
    const data = writeDataset(dir);
    const nsd = await startNsd(dir, data.zoneFile);
    const env: PeerEnv = { dir, root, linednsRoot: head.root, baselineRoot: base.root, data, nsdPort: nsd.port };
    const servers: [string, Running][] = [
      ['linedns', await startLineDns(env)],
      ['linedns-base', await startLineDns(env, { baseline: true })],
    ];
    process.stderr.write(`linedns: ${head.describe}\nlinedns-base: ${base.describe}\n`);
    for (const [, s] of servers) {
      const warm = await writeUniqueQueries(dir, WARMUP);
      await dnsperf({ port: s.port, queryFile: warm, seconds: 60, clients: 4, outstanding: 100, maxQps: RATE * 2, once: true });
    }
    const us: Record<string, number[]> = { linedns: [], 'linedns-base': [] };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which build goes first, so a drift in the machine's load falls on both.
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const [name, s] of order) {
        const queries = await writeUniqueQueries(dir, RATE * SECONDS);
        const before = cpuSeconds(s.pid);
        const r = await dnsperf({ port: s.port, queryFile: queries, seconds: SECONDS + 30, clients: 4, outstanding: 100, maxQps: RATE, once: true });
        const cpu = cpuSeconds(s.pid) - before;
        const perQuery = (cpu / Math.max(1, r.completed)) * 1e6;
        us[name]!.push(perQuery);
        process.stderr.write(`round ${round + 1}/${ROUNDS} ${name}: ${perQuery.toFixed(1)} µs CPU per miss (${r.completed} answered, ${r.lost} lost)\n`);
      }
    }
    const ratios = us.linedns!.map((v, i) => v / us['linedns-base']![i]!);
    process.stdout.write(
      `CPU per cache miss at ${RATE} qps offered, ${ROUNDS} rounds: linedns ${median(us.linedns!).toFixed(1)} µs, ` +
        `linedns-base ${median(us['linedns-base']!).toFixed(1)} µs; linedns/base ${(median(us.linedns!) / median(us['linedns-base']!)).toFixed(3)}x, ` +
        `per round median ${median(ratios).toFixed(3)}x (${ratios.map((x) => x.toFixed(2)).join(' ')})\n`,
    );
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  killAllNow();
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
