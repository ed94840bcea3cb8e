// Runs dnsperf against a loopback port and parses its statistics; in latency mode (-v, fixed
// rate) it also builds a per-query latency histogram, since dnsperf reports no percentiles.

import { LOOPBACK } from './net.js';
import { start } from './proc.js';

export interface DnsperfRun {
  port: number;
  queryFile: string;
  seconds: number;
  clients: number;
  outstanding: number;
  /** Queries per second to send at most (dnsperf -Q); undefined: as fast as answered. */
  maxQps?: number;
  /** Go through the query file once only (unique-name files must not wrap). */
  once?: boolean;
  /** Per-query latencies (dnsperf -v), for percentiles. */
  latencies?: boolean;
}

export interface DnsperfResult {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  runTime: number;
  avgLatencyMs: number;
  maxLatencyMs: number;
  rcodes: Record<string, number>;
  /** Present in latency mode. */
  p50Ms?: number;
  p99Ms?: number;
  p999Ms?: number;
  /** True when the file ran out before the time limit (then the run was shorter). */
  exhausted: boolean;
}

/** Histogram bins of 1 µs up to 100 ms, then one overflow bin. */
const BINS = 100_000;

class Histogram {
  private readonly counts = new Uint32Array(BINS + 1);
  total = 0;

  add(seconds: number): void {
    const us = Math.round(seconds * 1e6);
    this.counts[Math.min(BINS, Math.max(0, us))]!++;
    this.total++;
  }

  percentileMs(p: number): number {
    const target = Math.ceil(this.total * p);
    let seen = 0;
    for (let i = 0; i <= BINS; i++) {
      seen += this.counts[i]!;
      if (seen >= target && seen > 0) return i / 1000;
    }
    return NaN;
  }
}

function field(text: string, label: string): number {
  const m = new RegExp(`${label}:\\s+([0-9.]+)`).exec(text);
  return m ? Number(m[1]) : NaN;
}

export function parseSummary(text: string): Omit<DnsperfResult, 'exhausted'> {
  const rcodes: Record<string, number> = {};
  const rc = /Response codes:\s+(.*)/.exec(text)?.[1] ?? '';
  for (const m of rc.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]!] = Number(m[2]);
  const lat = /Average Latency \(s\):\s+([0-9.]+) \(min [0-9.]+, max ([0-9.]+)\)/.exec(text);
  return {
    sent: field(text, 'Queries sent'),
    completed: field(text, 'Queries completed'),
    lost: field(text, 'Queries lost'),
    qps: field(text, 'Queries per second'),
    runTime: field(text, 'Run time \\(s\\)'),
    avgLatencyMs: lat ? Number(lat[1]) * 1000 : NaN,
    maxLatencyMs: lat ? Number(lat[2]) * 1000 : NaN,
    rcodes,
  };
}

export async function dnsperf(run: DnsperfRun): Promise<DnsperfResult> {
  const args = ['-s', LOOPBACK, '-p', String(run.port), '-d', run.queryFile, '-l', String(run.seconds), '-c', String(run.clients), '-q', String(run.outstanding), '-t', '2'];
  if (run.maxQps !== undefined) args.push('-Q', String(Math.max(1, Math.round(run.maxQps))));
  if (run.once) args.push('-n', '1');
  const hist = new Histogram();
  let summary = '';
  let partial = '';
  const onStdout = run.latencies
    ? (chunk: Buffer): void => {
        const text = partial + chunk.toString('latin1');
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (line.startsWith('> ')) {
            // "> NOERROR name type 0.000123"; timeouts are "> T name type" and carry no latency.
            const sp = line.lastIndexOf(' ');
            const v = Number(line.slice(sp + 1));
            if (!line.startsWith('> T ') && Number.isFinite(v)) hist.add(v);
          } else summary += `${line}\n`;
        }
      }
    : undefined;
  if (run.latencies) args.push('-v');
  const p = start('dnsperf', 'dnsperf', args, null, onStdout ? { onStdout } : {});
  const code = await p.exited;
  const text = run.latencies ? summary + partial : p.output();
  if (code !== 0) throw new Error(`dnsperf exited with ${code}: ${text.slice(-1500)}`);
  const parsed = parseSummary(text);
  const result: DnsperfResult = { ...parsed, exhausted: /Testing complete \(end of file\)/.test(text) };
  if (run.latencies && hist.total > 0) {
    result.p50Ms = hist.percentileMs(0.5);
    result.p99Ms = hist.percentileMs(0.99);
    result.p999Ms = hist.percentileMs(0.999);
  }
  return result;
}
