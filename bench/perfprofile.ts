// `node dist/bench/perfprofile.js`: where a query's CPU goes in linedns and in the bare Node ceiling,
// from `perf record` (kernel and native code included, which node --cpu-prof cannot separate).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dnsperf } from './dnsperf.js';
import { startCeiling, startLineDns, startNsd, type PeerEnv, type Running } from './peers.js';
import { commandExists, sleep, stopAll } from './proc.js';
import { takeSnapshot } from './snapshot.js';
import { writeDataset, writeUniqueQueries, type WorkloadName } from './workloads.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const log = (s: string): void => {
  process.stderr.write(`[perf] ${s}\n`);
};

/** Where a sample landed: the categories of the table. */
function category(dso: string, sym: string): string {
  if (dso === '[kernel.kallsyms]') return 'kernel (syscalls, loopback delivery, wake-ups)';
  if (dso.startsWith('[JIT]')) {
    if (sym.includes('/dist/src/')) return 'JS: linedns';
    if (sym.includes('node_modules/')) return 'JS: dependencies';
    if (sym.includes('node:')) return 'JS: Node internals (dgram, timers, ...)';
    return 'JS: other (regexps, unnamed)';
  }
  if (dso === 'node') return sym.startsWith('Builtins_') ? 'V8 builtins (Map probes, calls, ICs)' : 'Node/V8/libuv C++ (incl. GC)';
  if (dso.startsWith('libc')) return 'libc (malloc, memcpy, sendmsg stubs)';
  return 'other';
}

interface Profile {
  qps: number;
  /** Microseconds of CPU per query, by category and by symbol. */
  byCategory: Map<string, number>;
  bySymbol: Map<string, number>;
  total: number;
}

/** perf report as "samples dso symbol" rows, turned into µs per query (cpu-clock, 999 Hz). */
function readReport(file: string, queries: number, hz: number): Profile {
  const r = spawnSync('perf', ['report', '-i', file, '--no-children', '--sort=dso,sym', '--stdio', '-g', 'none', '-n'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`perf report failed: ${r.stderr.slice(0, 500)}`);
  const byCategory = new Map<string, number>();
  const bySymbol = new Map<string, number>();
  let total = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*[\d.]+%\s+(\d+)\s+(.*?)\s+\[([.k])\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const us = (Number(m[1]) * 1e6) / hz / queries;
    const dso = m[2]!.startsWith('[JIT]') ? '[JIT]' : m[2]!;
    const sym = m[4]!.trim().replace(/file:\/\/\S*?\/dist\/src\//, 'src/');
    const cat = category(dso, m[4]!);
    byCategory.set(cat, (byCategory.get(cat) ?? 0) + us);
    bySymbol.set(`${sym} (${dso})`, (bySymbol.get(`${sym} (${dso})`) ?? 0) + us);
    total += us;
  }
  return { qps: 0, byCategory, bySymbol, total };
}

async function profile(name: string, server: Running, w: WorkloadName, env: PeerEnv, dir: string): Promise<Profile> {
  const hz = 999;
  const file = async (seconds: number): Promise<string> => (w === 'hit' ? env.data.hitQueries : w === 'local' ? env.data.localQueries : writeUniqueQueries(env.dir, 60_000 * seconds));
  const base = { port: server.port, clients: 4, outstanding: 100, once: w === 'miss' };
  await dnsperf({ ...base, queryFile: await file(3), seconds: 3 });
  // perf records the middle of a longer run, so neither the ramp-up nor the tail is in it.
  const load = dnsperf({ ...base, queryFile: await file(SECONDS + 2), seconds: SECONDS + 2 });
  await sleep(1000);
  const out = join(dir, `${name}-${w}.data`);
  const rec = spawnSync('perf', ['record', '-q', '-F', String(hz), '-g', '-o', out, '-p', String(server.pid), '--', 'sleep', String(SECONDS)], { encoding: 'utf8', timeout: (SECONDS + 30) * 1000 });
  const result = await load;
  if (rec.status !== 0) throw new Error(`perf record failed (perf_event_paranoid? run as root): ${rec.stderr.slice(0, 500)}`);
  const p = readReport(out, result.qps * SECONDS, hz);
  p.qps = result.qps;
  return p;
}

const fmt = (us: number): string => us.toFixed(2);
const signed = (us: number): string => `${us >= 0 ? '+' : ''}${fmt(us)}`;

function table(w: WorkloadName, ceiling: Profile, linedns: Profile): string {
  const cats = [...new Set([...linedns.byCategory.keys(), ...ceiling.byCategory.keys()])].sort((a, b) => (linedns.byCategory.get(b) ?? 0) - (linedns.byCategory.get(a) ?? 0));
  const rows = cats.map((c) => {
    const a = ceiling.byCategory.get(c) ?? 0;
    const b = linedns.byCategory.get(c) ?? 0;
    return `| ${c} | ${fmt(a)} | ${fmt(b)} | ${signed(b - a)} |`;
  });
  const top = [...linedns.bySymbol.entries()].sort((x, y) => y[1] - x[1]).slice(0, 15);
  return [
    `#### ${w === 'hit' ? 'Cache hits' : w === 'local' ? 'Local records' : 'Cache misses'} (ceiling ${Math.round(ceiling.qps)} qps, linedns ${Math.round(linedns.qps)} qps while recorded)`,
    '',
    '| where the CPU goes (µs per query) | ceiling | linedns | difference |',
    '|---|---:|---:|---:|',
    ...rows,
    `| **total** | **${fmt(ceiling.total)}** | **${fmt(linedns.total)}** | **${signed(linedns.total - ceiling.total)}** (ceiling / linedns ${(ceiling.total / linedns.total).toFixed(2)}) |`,
    '',
    'linedns, the 15 most expensive symbols (self time, µs per query):',
    '',
    '| symbol | µs/query |',
    '|---|---:|',
    ...top.map(([s, us]) => `| \`${s.replace(/\|/g, '\\|').slice(0, 110)}\` | ${fmt(us)} |`),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  for (const tool of ['perf', 'dnsperf', 'nsd']) if (commandExists(tool) === null) throw new Error(`${tool} is not installed (perf: apt-get install linux-perf)`);
  const dir = mkdtempSync(join(os.tmpdir(), 'linedns-perf-'));
  // --perf-basic-prof makes V8 write isolate-*.log files into the working directory: keep them
  // in the temporary one, which goes at the end.
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    const snap = takeSnapshot(root, dir);
    const data = writeDataset(dir);
    const nsd = await startNsd(dir, data.zoneFile);
    const env: PeerEnv = { dir, root, linednsRoot: snap.root, data, nsdPort: nsd.port };
    const parts = [`linedns: ${snap.describe}; perf record -F 999 -g over ${SECONDS} s of dnsperf -c 4 -q 100, per query = samples / (qps x seconds).`, ''];
    for (const w of ['hit', 'local', 'miss'] as WorkloadName[]) {
      const got: Profile[] = [];
      // Both with --perf-basic-prof, so JIT code has names on both sides of the table.
      for (const start of [() => startCeiling(env, w, ['--perf-basic-prof']), () => startLineDns(env, { nodeArgs: ['--perf-basic-prof'] })]) {
        const server = await start();
        try {
          got.push(await profile(got.length === 0 ? 'ceiling' : 'linedns', server, w, env, dir));
        } finally {
          await server.stop();
          // --perf-basic-prof's symbol map: only needed until perf report has read it.
          rmSync(`/tmp/perf-${server.pid}.map`, { force: true });
        }
      }
      log(`${w}: ceiling ${fmt(got[0]!.total)} µs/query, linedns ${fmt(got[1]!.total)}`);
      parts.push(table(w, got[0]!, got[1]!));
    }
    await nsd.stop();
    process.stdout.write(`${parts.join('\n')}\n`);
  } finally {
    await stopAll();
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await stopAll();
  process.exit(1);
});
