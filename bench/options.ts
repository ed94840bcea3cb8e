// Benchmark settings read from the environment (BENCH_*), with the defaults of a full run.
// One place so that run.ts, the report and the docs agree on what a "quick" run shortens.

export interface BenchOptions {
  /** Seconds of each measured dnsperf run. */
  seconds: number;
  /** Measured runs per (workload, server) cell; the median is reported. */
  runs: number;
  /** Seconds of the warm-up pass before the measured runs. */
  warmupSeconds: number;
  /** dnsperf clients (source ports) and outstanding queries. */
  clients: number;
  outstanding: number;
  /** Fraction of the measured max qps used by the fixed-rate latency run. */
  latencyLoad: number;
  /** Answers to put in the linedns cache for the memory step. */
  memEntries: number;
  /** Only these servers / sections (comma lists); empty means all. */
  onlyServers: string[];
  onlySections: string[];
  /** Only these throughput workloads (hit, local, miss); empty means all. */
  onlyWorkloads: string[];
  /** Write docs/benchmarks.md (off with BENCH_NO_DOCS=1, e.g. for a trial run). */
  writeDocs: boolean;
  /**
   * BENCH_BASELINE: another checkout of linedns, built, run as the row `linedns-base` beside
   * `linedns` in the same rounds: the same-run A/B a hot-path change owes.
   */
  baseline: string | null;
}

function num(name: string, fallback: number, min: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}=${text}: expected a number >= ${min}`);
  return n;
}

function list(name: string): string[] {
  return (process.env[name] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function readOptions(): BenchOptions {
  // Five 5-second runs rather than three of 10: the machine's background load comes and goes
  // within minutes, and more, shorter turns give the medians more to choose from.
  const seconds = num('BENCH_SECONDS', 5, 1);
  const runs = Math.round(num('BENCH_RUNS', 5, 1));
  // A smoke run (BENCH_SECONDS < 5, or one run) fills 100,000 answers and extrapolates per
  // entry, since a full million takes over a minute of cache-miss traffic on its own.
  const memDefault = seconds >= 5 && runs > 1 ? 1_000_000 : 100_000;
  return {
    seconds,
    runs,
    warmupSeconds: num('BENCH_WARMUP', Math.min(3, seconds), 1),
    clients: Math.round(num('BENCH_CLIENTS', 4, 1)),
    outstanding: Math.round(num('BENCH_OUTSTANDING', 100, 1)),
    latencyLoad: num('BENCH_LATENCY_LOAD', 0.7, 0.05),
    memEntries: Math.round(num('BENCH_MEM_ENTRIES', memDefault, 1000)),
    onlyServers: list('BENCH_SERVERS'),
    onlySections: list('BENCH_SECTIONS'),
    onlyWorkloads: list('BENCH_WORKLOADS'),
    writeDocs: process.env.BENCH_NO_DOCS !== '1',
    baseline: process.env.BENCH_BASELINE || null,
  };
}

export function wantSection(o: BenchOptions, name: string): boolean {
  return o.onlySections.length === 0 || o.onlySections.includes(name);
}

export function wantServer(o: BenchOptions, name: string): boolean {
  return o.onlyServers.length === 0 || o.onlyServers.includes(name);
}
