// `node dist/bench/callgrind-miss.js ROOT...`: instructions per cache-miss query of one or more
// linedns builds, counted by valgrind's callgrind. On the shared 2-core machine qps (and even
// q/CPU-s) of one build swings by 10-30% between rounds, far above a 5% budget; instructions of
// a fixed, bounded query stream do not depend on the neighbours' load.
//
// Each build runs under callgrind with instrumentation off for its start and a warm-up (so the
// JIT has tiered up and the cache is full and evicting), on for CG_QUERIES unique names
// forwarded to nsd, then off again. Bounded: a window of outstanding queries, a per-query
// timeout, and an overall deadline. Run inside `unshare --net` (loopback only), like the benchmark.
//
// The total still varies by up to 15% from run to run of one build: a TurboFan compile or
// the upstream pool's timers landing in the measured window, both counted. So the figures are
// also given without V8's compiler, and for JIT code alone (linedns's and Node's JavaScript,
// once optimised), which repeats to about 2%.

import dgram from 'node:dgram';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import dnsPacket from 'dns-packet';
import { freePort, LOOPBACK, waitForDns } from './net.js';
import { startNsd } from './peers.js';
import { start, stop, stopAll } from './proc.js';
import { MISS_SUFFIX, PROBE_NAME, writeDataset } from './workloads.js';

const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? '');
  return Number.isFinite(v) && v > 0 ? v : fallback;
};
// The benchmark's cache size and dnsperf's outstanding queries per client; a warm-up that
// fills the cache, so the measured queries also pay for eviction, as a 5-second run does.
const CACHE_ENTRIES = num('CG_CACHE', 100_000);
const WARMUP = num('CG_WARMUP', 110_000);
const QUERIES = num('CG_QUERIES', 20_000);
const ROUNDS = num('CG_ROUNDS', 1);
const WINDOW = num('CG_WINDOW', 100);
const DEADLINE_MS = num('CG_DEADLINE_S', 600) * 1000;
/** CG_TOOL=none: the same load with no valgrind (e.g. with CG_NODE_ARGS=--trace-deopt), log kept. */
const VALGRIND = process.env.CG_TOOL !== 'none';
const NODE_ARGS = (process.env.CG_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
/** E.g. CG_VALGRIND_ARGS=--cache-sim=yes: memory stalls, which instruction counts miss (see the logs). */
const VALGRIND_ARGS = (process.env.CG_VALGRIND_ARGS ?? '').split(' ').filter((a) => a !== '');
const log = (s: string): void => {
  process.stderr.write(`[cg] ${s}\n`);
};

let serial = 0;
const nonce = Date.now().toString(36);

/** Sends `count` unique miss names, at most WINDOW outstanding; resolves with how many were lost. */
function load(port: number, count: number, deadline: number): Promise<number> {
  return new Promise((resolveLoad) => {
    const s = dgram.createSocket('udp4');
    const pending = new Map<number, NodeJS.Timeout>();
    let sent = 0;
    let done = 0;
    let lost = 0;
    let nextId = 0;
    const finish = (): void => {
      for (const t of pending.values()) clearTimeout(t);
      s.close();
      resolveLoad(lost + (count - done));
    };
    const settle = (id: number, ok: boolean): void => {
      const t = pending.get(id);
      if (t === undefined) return;
      clearTimeout(t);
      pending.delete(id);
      done++;
      if (!ok) lost++;
      if (done === count || Date.now() > deadline) finish();
      else pump();
    };
    const pump = (): void => {
      while (sent < count && pending.size < WINDOW) {
        const id = nextId;
        nextId = (nextId + 1) & 0xffff;
        const name = `c${nonce}-${serial++}.${MISS_SUFFIX}`;
        pending.set(id, setTimeout(() => settle(id, false), 5000));
        s.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), port, LOOPBACK);
        sent++;
      }
    };
    s.on('message', (msg) => settle(msg.readUInt16BE(0), true));
    s.bind(0, LOOPBACK, pump);
  });
}

function callgrindControl(pid: number, arg: string): void {
  const r = spawnSync('callgrind_control', [arg, String(pid)], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`callgrind_control ${arg} ${pid}: ${r.stderr || r.stdout}`);
}

/** Instructions (Ir, the first event) collected, as valgrind's log says at exit (the out file's summary stays 0). */
function collectedIr(logFile: string): number {
  const m = /Collected : (\d+)/.exec(readFileSync(logFile, 'utf8'));
  if (!m) throw new Error(`no "Collected" line in ${logFile}`);
  return Number(m[1]);
}

interface Counts {
  total: number;
  /** Without V8's optimising compiler (background threads, counted too). */
  noCompiler: number;
  /** JIT code alone: no symbol, as callgrind cannot name it. */
  jit: number;
}

/** Per query, from callgrind_annotate's self-cost listing of the out file. */
function counts(outFile: string, total: number): Counts {
  const r = spawnSync('callgrind_annotate', ['--inclusive=no', '--show=Ir', '--threshold=100', outFile], { encoding: 'utf8', maxBuffer: 256 << 20, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`callgrind_annotate ${outFile}: ${r.stderr}`);
  let compiler = 0;
  let jit = 0;
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (!m || m[2]!.includes('PROGRAM TOTALS')) continue;
    const ir = Number(m[1]!.replace(/,/g, ''));
    if (m[2]!.startsWith('???:0x')) jit += ir;
    else if (/v8::internal::(compiler|maglev)::/.test(m[2]!)) compiler += ir;
  }
  return { total: total / QUERIES, noCompiler: (total - compiler) / QUERIES, jit: jit / QUERIES };
}

async function measure(root: string, dir: string, nsdPort: number, data: ReturnType<typeof writeDataset>, tag: string, deadline: number): Promise<Counts | null> {
  const port = await freePort();
  const conf = join(dir, `linedns-${port}.json`);
  writeFileSync(
    conf,
    JSON.stringify({ listen: [`${LOOPBACK}:${port}`], upstreams: [`${LOOPBACK}:${nsdPort}`], records: data.records, smartLine: data.smartLine, cache: { maxEntries: CACHE_ENTRIES } }),
  );
  const out = join(dir, `callgrind.${tag}.out`);
  const node = [process.execPath, ...NODE_ARGS, join(root, 'dist/src/cli.js'), 'serve', '--config', conf, '--log-level', 'warn'];
  const args = VALGRIND ? ['--tool=callgrind', '--instr-atstart=no', ...VALGRIND_ARGS, `--callgrind-out-file=${out}`, ...node] : node.slice(1);
  const logFile = join(dir, `${VALGRIND ? 'valgrind' : 'node'}-${tag}.log`);
  const proc = start(`linedns-${tag}`, VALGRIND ? 'valgrind' : process.execPath, args, logFile);
  try {
    await waitForDns(port, PROBE_NAME, 120_000, () => proc.child.exitCode === null);
    const lostWarm = await load(port, WARMUP, deadline);
    if (VALGRIND) callgrindControl(proc.pid, '--instr=on');
    // What the server logged during the measured queries alone (e.g. which functions V8
    // compiled or deoptimised then, with CG_NODE_ARGS="--trace-opt --trace-deopt") goes to *.measured.
    const mark = statSync(logFile).size;
    const lost = await load(port, QUERIES, deadline);
    if (VALGRIND) callgrindControl(proc.pid, '--instr=off');
    await new Promise((r) => setTimeout(r, 200));
    writeFileSync(`${logFile}.measured`, readFileSync(logFile).subarray(mark));
    if (lost + lostWarm > 0) log(`${tag}: lost ${lostWarm} in the warm-up, ${lost} measured`);
  } finally {
    await stop(proc, 20_000);
  }
  return VALGRIND ? counts(out, collectedIr(logFile)) : null;
}

async function main(): Promise<void> {
  const roots = process.argv.slice(2).map((r) => resolve(r));
  if (roots.length === 0) throw new Error('usage: callgrind-miss.js ROOT [ROOT...]');
  const deadline = Date.now() + DEADLINE_MS;
  const dir = mkdtempSync(join(os.tmpdir(), 'linedns-cg-'));
  const data = writeDataset(dir);
  const nsd = await startNsd(dir, data.zoneFile);
  log(`dir ${dir}; ${WARMUP} warm-up and ${QUERIES} measured queries per build, cache ${CACHE_ENTRIES}, window ${WINDOW}`);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternating order, so a build never always runs in the same slot of a round.
      const order = round % 2 === 0 ? roots : [...roots].reverse();
      for (const root of order) {
        if (Date.now() > deadline) throw new Error('deadline passed');
        const i = roots.indexOf(root);
        const c = await measure(root, dir, nsd.port, data, `${i}-${round}`, deadline);
        const what = c === null ? 'done (no valgrind)' : `${c.total.toFixed(0)} Ir/query, ${c.noCompiler.toFixed(0)} without V8's compiler, ${c.jit.toFixed(0)} in JIT code`;
        console.log(`round ${round} ${root}: ${what}`);
      }
    }
  } finally {
    await nsd.stop();
    await stopAll();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
