// One table cell: a warm-up pass, N measured dnsperf runs at full speed (qps, server CPU, RSS),
// then a fixed-rate run at a fraction of the measured max for the latency percentiles.

import type { BenchOptions } from './options.js';
import { dnsperf, type DnsperfResult } from './dnsperf.js';
import { cpuSeconds, rssBytes } from './proc.js';
import { writeUniqueQueries, type Dataset, type WorkloadName } from './workloads.js';

export interface RunSample {
  qps: number;
  completed: number;
  sent: number;
  lost: number;
  cpuSeconds: number;
  qpsPerCpu: number;
  avgLatencyMs: number;
  rssBytes: number;
  rcodes: Record<string, number>;
  exhausted: boolean;
}

export interface Cell {
  server: string;
  workload: WorkloadName;
  runs: RunSample[];
  /** Medians over runs. */
  qps: number;
  qpsPerCpu: number;
  /** CPU-seconds per wall second: 1.0 is one core busy. */
  cpuLoad: number;
  avgLatencyMs: number;
  lostAtMax: number;
  sentAtMax: number;
  rssBytes: number;
  latency: { rate: number; p50Ms: number; p99Ms: number; p999Ms: number; lost: number; sent: number; qps: number } | null;
  /** Non-NOERROR answers seen (a misconfigured server answers fast and wrong). */
  badRcodes: Record<string, number>;
  error?: string;
}

export function median(xs: number[]): number {
  const a = xs.filter((x) => Number.isFinite(x)).sort((p, q) => p - q);
  if (a.length === 0) return NaN;
  const mid = a.length >> 1;
  return a.length % 2 ? a[mid]! : (a[mid - 1]! + a[mid]!) / 2;
}

/** Upper bound on any server's rate here: sizes the unique-name files so that none wraps. */
const MAX_RATE = 150_000;

/** The query file of a workload; misses get a file of names never asked, sized for `rate`. */
export async function queryFile(w: WorkloadName, data: Dataset, seconds: number, rate: number): Promise<{ file: string; once: boolean }> {
  if (w === 'hit') return { file: data.hitQueries, once: false };
  if (w === 'local') return { file: data.localQueries, once: false };
  return { file: await writeUniqueQueries(data.dir, Math.ceil(rate * seconds * 1.05) + 1000), once: true };
}

/** A server under one workload: warm it, measure it one run at a time (interleaved with others). */
export class CellRunner {
  private readonly runs: RunSample[] = [];
  private readonly badRcodes: Record<string, number> = {};
  private fileRate = MAX_RATE;
  private latency: Cell['latency'] = null;

  constructor(
    readonly server: string,
    readonly workload: WorkloadName,
    private readonly port: number,
    private readonly pid: number,
    private readonly data: Dataset,
    private readonly o: BenchOptions,
  ) {}

  private get base(): { port: number; clients: number; outstanding: number } {
    return { port: this.port, clients: this.o.clients, outstanding: this.o.outstanding };
  }

  private noteRcodes(r: DnsperfResult): void {
    for (const [k, v] of Object.entries(r.rcodes)) if (k !== 'NOERROR') this.badRcodes[k] = (this.badRcodes[k] ?? 0) + v;
  }

  async warmUp(): Promise<void> {
    const warm = await queryFile(this.workload, this.data, this.o.warmupSeconds, MAX_RATE);
    const r = await dnsperf({ ...this.base, queryFile: warm.file, seconds: this.o.warmupSeconds, once: warm.once });
    // Unique-name files for the measured runs are sized from the warm-up rate, with headroom.
    this.fileRate = Math.min(MAX_RATE, Math.max(20_000, r.qps * 2));
  }

  async measureOnce(): Promise<RunSample> {
    const q = await queryFile(this.workload, this.data, this.o.seconds, this.fileRate);
    const cpu0 = cpuSeconds(this.pid);
    const r = await dnsperf({ ...this.base, queryFile: q.file, seconds: this.o.seconds, once: q.once });
    const cpu = cpuSeconds(this.pid) - cpu0;
    this.noteRcodes(r);
    const sample: RunSample = {
      qps: r.qps,
      completed: r.completed,
      sent: r.sent,
      lost: r.lost,
      cpuSeconds: cpu,
      qpsPerCpu: cpu > 0 ? r.completed / cpu : NaN,
      avgLatencyMs: r.avgLatencyMs,
      rssBytes: rssBytes(this.pid),
      rcodes: r.rcodes,
      exhausted: r.exhausted,
    };
    this.runs.push(sample);
    return sample;
  }

  /** Fixed rate at a fraction of the median max measured so far, with per-query latencies
   *  (null when there is no max to take a fraction of). */
  async measureLatency(): Promise<Cell['latency']> {
    const qps = median(this.runs.map((r) => r.qps));
    if (!Number.isFinite(qps) || qps <= 0) return null;
    const rate = qps * this.o.latencyLoad;
    const q = await queryFile(this.workload, this.data, this.o.seconds, rate);
    const r = await dnsperf({ ...this.base, queryFile: q.file, seconds: this.o.seconds, once: q.once, maxQps: rate, latencies: true });
    this.noteRcodes(r);
    this.latency = { rate, p50Ms: r.p50Ms ?? NaN, p99Ms: r.p99Ms ?? NaN, p999Ms: r.p999Ms ?? NaN, lost: r.lost, sent: r.sent, qps: r.qps };
    return this.latency;
  }

  result(): Cell {
    const runs = this.runs;
    return {
      server: this.server,
      workload: this.workload,
      runs,
      qps: median(runs.map((r) => r.qps)),
      qpsPerCpu: median(runs.map((r) => r.qpsPerCpu)),
      cpuLoad: median(runs.map((r) => r.cpuSeconds / this.o.seconds)),
      avgLatencyMs: median(runs.map((r) => r.avgLatencyMs)),
      lostAtMax: runs.reduce((s, r) => s + r.lost, 0),
      sentAtMax: runs.reduce((s, r) => s + r.sent, 0),
      rssBytes: Math.max(0, ...runs.map((r) => r.rssBytes)),
      latency: this.latency,
      badRcodes: this.badRcodes,
    };
  }
}

export function failedCell(server: string, workload: WorkloadName, error: string): Cell {
  return { server, workload, runs: [], qps: NaN, qpsPerCpu: NaN, cpuLoad: NaN, avgLatencyMs: NaN, lostAtMax: NaN, sentAtMax: NaN, rssBytes: NaN, latency: null, badRcodes: {}, error };
}
