// `npm run bench`: starts nsd and each server in turn on loopback, runs the workloads with dnsperf,
// the memory / start-up / CIDR checks and the profile, then rewrites docs/benchmarks.md.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cidrStep } from './cidr.js';
import { deadUpstreamStep } from './dead-upstream.js';
import { CellRunner, failedCell, type Cell } from './measure.js';
import { memoryStep, startupStep } from './memory.js';
import { footprintStep } from './footprint.js';
import { readOptions, wantSection, wantServer, type BenchOptions } from './options.js';
import { displayRank, installed, SERVERS, startNsd, toolVersions, type PeerEnv, type Running } from './peers.js';
import { commandExists, killAllNow, stopAll } from './proc.js';
import { profileStep } from './profile.js';
import { resultsMarkdown, writeDocs, type BenchResults } from './report.js';
import { takeSnapshot } from './snapshot.js';
import { writeDataset, type WorkloadName } from './workloads.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const log = (s: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

function machine(): string {
  const cpus = os.cpus();
  let kernel = os.release();
  try {
    kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    // keep os.release()
  }
  return `${os.availableParallelism()} CPUs (nproc) ${cpus[0]?.model.trim() ?? ''}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GB RAM, Linux ${kernel}`;
}

/** Traffic stays on loopback whatever the host, but a private network namespace also proves it. */
function networkNote(): void {
  const outside = Object.entries(os.networkInterfaces()).filter(([, addrs]) => (addrs ?? []).some((a) => !a.internal));
  if (outside.length > 0) log(`note: interfaces other than loopback are up (${outside.map(([n]) => n).join(', ')}); every server here is bound to and forwards to 127.0.0.1 only. For isolation run: unshare --net bash -c 'ip link set lo up; npm run bench'`);
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

async function main(): Promise<void> {
  const o = readOptions();
  const t0 = performance.now();
  const startedAt = new Date();
  for (const tool of ['dnsperf', 'nsd']) {
    if (commandExists(tool) === null) throw new Error(`${tool} is not installed: apt-get install ${tool === 'nsd' ? 'nsd' : 'dnsperf'} (see docs/benchmarks.md)`);
  }
  networkNote();
  const dir = mkdtempSync(join(os.tmpdir(), 'linedns-bench-'));
  tmpDir = dir;
  log(`temporary files in ${dir}`);
  const results: BenchResults = { startedAt, durationS: 0, options: o, versions: toolVersions(), machine: machine(), linedns: '', cells: [], skipped: [], serverNotes: [], profiles: {}, profileErrors: {} };
  let nsd: Running | null = null;
  try {
    const snap = takeSnapshot(root, dir);
    results.linedns = snap.describe;
    log(`linedns under test: ${snap.describe}`);
    const data = writeDataset(dir);
    nsd = await startNsd(dir, data.zoneFile);
    log(`nsd on port ${nsd.port}`);
    const base = o.baseline === null ? null : takeSnapshot(o.baseline, join(dir, 'base'));
    if (base !== null) log(`linedns-base: ${base.describe}`);
    const env: PeerEnv = { dir, root, linednsRoot: snap.root, baselineRoot: base?.root ?? null, data, nsdPort: nsd.port };
    // The baseline row exists only when a baseline checkout was given.
    const runs = (spec: (typeof SERVERS)[number]): boolean => wantServer(o, spec.name) && (spec.name !== 'linedns-base' || base !== null);

    if (wantSection(o, 'throughput')) {
      for (const spec of SERVERS) {
        if (!runs(spec)) continue;
        if (!installed(spec)) results.skipped.push({ server: spec.name, reason: `${spec.binary} not installed` });
        else results.serverNotes.push({ server: spec.name, note: spec.note });
      }
      if (wantServer(o, 'nsd')) results.serverNotes.push({ server: 'nsd', note: 'the upstream itself, queried directly (1 server process, RRL off)' });
      results.serverNotes.sort((a, b) => displayRank(a.server) - displayRank(b.server));
      for (const w of ['hit', 'local', 'miss'] as WorkloadName[]) {
        if (o.onlyWorkloads.length > 0 && !o.onlyWorkloads.includes(w)) continue;
        const contenders: Contender[] = SERVERS.filter((spec) => runs(spec) && installed(spec) && spec.workloads.includes(w)).map((spec) => ({
          name: spec.name,
          start: () => spec.start(env, w),
        }));
        // The authoritative itself: the most any forwarder in front of it could get here.
        const shared = nsd;
        if (w !== 'local' && wantServer(o, 'nsd')) contenders.push({ name: 'nsd', start: async () => ({ ...shared, stop: async () => undefined }) });
        results.cells.push(...(await runWorkload(w, contenders, env, o)));
      }
    }
    if (wantSection(o, 'dead-upstream')) {
      log('one upstream dead: linedns and Unbound forwarding to [dead, nsd]');
      try {
        results.deadUpstream = await deadUpstreamStep(env, o, log);
      } catch (err) {
        results.deadUpstreamError = errorText(err);
        log(`dead-upstream step failed: ${results.deadUpstreamError}`);
      }
    }
    if (wantSection(o, 'memory')) {
      try {
        results.memory = await memoryStep(env, o.memEntries, log);
      } catch (err) {
        results.memoryError = errorText(err);
        log(`memory step failed: ${results.memoryError}`);
      }
    }
    if (wantSection(o, 'startup')) {
      log('start-up with 100,000 records and 10,000 CIDRs');
      try {
        results.startup = await startupStep(env, Math.max(1, o.runs), 100_000, 10_000);
      } catch (err) {
        results.startupError = errorText(err);
        log(`start-up step failed: ${results.startupError}`);
      }
    }
    if (wantSection(o, 'footprint')) {
      log('footprint: idle RSS and time to ready, the shipped config against a bare Node UDP socket');
      try {
        results.footprint = await footprintStep(env, Math.max(3, o.runs));
      } catch (err) {
        results.footprintError = errorText(err);
        log(`footprint step failed: ${results.footprintError}`);
      }
    }
    if (wantSection(o, 'cidr')) {
      log('CIDR lookup cost, 10 vs 10,000 CIDRs');
      try {
        results.cidr = await cidrStep(env.linednsRoot);
      } catch (err) {
        results.cidrError = errorText(err);
        log(`CIDR step failed: ${results.cidrError}`);
      }
    }
    if (wantSection(o, 'profile')) {
      for (const w of ['hit', 'miss'] as const) {
        log(`profiling linedns (${w === 'hit' ? 'cache hits' : 'cache misses'})`);
        try {
          const p = await profileStep(env, o, w);
          results.profiles[w] = p;
          log(`profile: ${p.file}`);
        } catch (err) {
          results.profileErrors[w] = errorText(err);
          log(`profile step failed: ${errorText(err)}`);
        }
      }
    }
  } finally {
    if (nsd) await nsd.stop();
    await stopAll();
    removeTmp();
  }
  results.durationS = (performance.now() - t0) / 1000;
  // Kept so that a change to the report can be tried without measuring again (--render).
  const saved = join(os.tmpdir(), 'linedns-bench-results.json');
  writeFileSync(saved, JSON.stringify(results));
  log(`measurements saved in ${saved}`);
  publish(results, o.writeDocs);
  log(`done in ${(results.durationS / 60).toFixed(1)} min`);
}

function publish(results: BenchResults, toDocs: boolean): void {
  const md = resultsMarkdown(results);
  process.stdout.write(`${md}\n`);
  if (toDocs) {
    const docs = join(root, 'docs/benchmarks.md');
    writeDocs(docs, md);
    log(`wrote ${docs}`);
  }
}

/** `run.js --render FILE`: the tables again from saved measurements, without running anything. */
function render(file: string): void {
  const results = JSON.parse(readFileSync(file, 'utf8'), (key, value: unknown) => (key === 'startedAt' && typeof value === 'string' ? new Date(value) : value)) as BenchResults;
  publish(results, readOptions().writeDocs);
}

interface Contender {
  name: string;
  start: () => Promise<Running>;
}

/**
 * All servers of a workload run side by side (idle but one) and take turns: run 1 of each, then
 * run 2 of each, forwards then backwards (A B C, C B A, A B C...). Load from elsewhere on the
 * machine comes and goes over minutes, so what keeps a ratio fair is that its two servers run
 * next to each other in every round: SERVERS lists linedns between the two ceilings.
 */
async function runWorkload(w: WorkloadName, contenders: Contender[], env: PeerEnv, o: BenchOptions): Promise<Cell[]> {
  const live: Array<{ name: string; running: Running; runner: CellRunner; error?: string }> = [];
  const failed: Cell[] = [];
  try {
    // Started together: each waits for its own first answer, and none is under load yet.
    const started = await Promise.allSettled(contenders.map((c) => c.start()));
    started.forEach((s, i) => {
      const name = contenders[i]!.name;
      if (s.status === 'fulfilled') live.push({ name, running: s.value, runner: new CellRunner(name, w, s.value.port, s.value.pid, env.data, o) });
      else {
        log(`${w}: ${name} failed to start: ${errorText(s.reason)}`);
        failed.push(failedCell(name, w, errorText(s.reason)));
      }
    });
    const step = async (e: (typeof live)[number], what: string, f: () => Promise<unknown>): Promise<void> => {
      if (e.error !== undefined) return;
      try {
        await f();
      } catch (err) {
        e.error = `${what}: ${errorText(err)}`;
        log(`${w}: ${e.name} failed: ${e.error}`);
      }
    };
    for (const e of live) await step(e, 'warm-up', () => e.runner.warmUp());
    for (let r = 0; r < o.runs; r++) {
      for (let i = 0; i < live.length; i++) {
        const e = live[r % 2 === 0 ? i : live.length - 1 - i]!;
        await step(e, `run ${r + 1}`, async () => {
          const s = await e.runner.measureOnce();
          log(`${w}: ${e.name} run ${r + 1}/${o.runs}: ${Math.round(s.qps)} qps, ${Math.round(s.qpsPerCpu)} q/CPU-s, lost ${s.lost}`);
        });
      }
    }
    for (const e of live) {
      await step(e, 'latency run', async () => {
        const lat = await e.runner.measureLatency();
        if (lat) log(`${w}: ${e.name} at ${Math.round(lat.rate)} qps: p50 ${lat.p50Ms.toFixed(3)} ms, p99 ${lat.p99Ms.toFixed(3)} ms, lost ${lat.lost}`);
      });
    }
  } finally {
    for (const e of live) await e.running.stop();
  }
  const cells = [...live.map((e) => (e.error === undefined ? e.runner.result() : failedCell(e.name, w, e.error))), ...failed];
  return cells.sort((a, b) => displayRank(a.server) - displayRank(b.server));
}

let tmpDir: string | null = null;

function removeTmp(): void {
  if (tmpDir === null) return;
  if (process.env.BENCH_KEEP === '1') log(`kept ${tmpDir}`);
  else rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = null;
}

// Stop exactly the processes started here, whatever ends the run.
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping the servers started by the benchmark`);
    void stopAll().finally(() => {
      removeTmp();
      process.exit(130);
    });
  });
}
process.on('exit', killAllNow);

const entry = process.argv[2] === '--render' && process.argv[3] !== undefined ? Promise.resolve(render(process.argv[3])) : main();
entry.catch(async (err: unknown) => {
  log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  await stopAll();
  process.exit(1);
});
