// Profiles of linedns under `node --cpu-prof` through the cache-hit (or cache-miss) workload,
// from the .cpuprofile it writes on exit, summarised by bench/cpuprofile.ts.

import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { summarise, type CpuProfile, type ProfileSummary } from './cpuprofile.js';
import { dnsperf } from './dnsperf.js';
import { queryFile } from './measure.js';
import type { BenchOptions } from './options.js';
import { startLineDns, type PeerEnv } from './peers.js';
import { cpuSeconds, sleep } from './proc.js';

export interface ProfileResult {
  file: string;
  qps: number;
  /** CPU seconds the process really used during the measured run (/proc), to set against the
   * profile's busy time: the difference is time it was runnable but preempted. */
  cpuSeconds: number;
  summary: ProfileSummary;
}

export async function profileStep(env: PeerEnv, o: BenchOptions, workload: 'hit' | 'miss'): Promise<ProfileResult> {
  const dir = join(env.dir, `cpu-prof-${workload}`);
  mkdirSync(dir, { recursive: true });
  const spawnedAt = performance.now();
  const server = await startLineDns(env, { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] });
  let qps = NaN;
  let cpu = NaN;
  // The summary keeps only the measured run: start-up (config load, schema compilation) and the
  // warm-up would otherwise weigh on a short run.
  const window = { fromMs: 0, toMs: Infinity };
  try {
    const base = { port: server.port, clients: o.clients, outstanding: o.outstanding };
    // Misses: names never asked before, read once; 50,000 a second is more than linedns forwards.
    const warm = await queryFile(workload, env.data, o.warmupSeconds, 50_000);
    await dnsperf({ ...base, queryFile: warm.file, seconds: o.warmupSeconds, once: warm.once });
    const measured = await queryFile(workload, env.data, o.seconds, 50_000);
    window.fromMs = performance.now() - spawnedAt;
    const cpu0 = cpuSeconds(server.pid);
    qps = (await dnsperf({ ...base, queryFile: measured.file, seconds: o.seconds, once: measured.once })).qps;
    cpu = cpuSeconds(server.pid) - cpu0;
    window.toMs = performance.now() - spawnedAt;
  } finally {
    // SIGTERM: linedns closes and exits, and Node writes the profile on the way out.
    await server.stop();
  }
  let files: string[] = [];
  for (let i = 0; i < 50 && files.length === 0; i++) {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    if (files.length === 0) await sleep(100);
  }
  if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}: did linedns exit cleanly on SIGTERM?`);
  const file = join(dir, files[0]!);
  return { file, qps, cpuSeconds: cpu, summary: summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, window) };
}
