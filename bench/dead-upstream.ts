// The "one upstream dead" workload: linedns and Unbound, each configured with [a dead loopback
// upstream, the live nsd] in that order, under the same fixed rate of cache misses in the same run.

import dgram from 'node:dgram';
import net from 'node:net';
import { dnsperf } from './dnsperf.js';
import { freePort, LOOPBACK } from './net.js';
import type { BenchOptions } from './options.js';
import { startLineDns, startUnbound, type PeerEnv, type Running } from './peers.js';
import { commandExists } from './proc.js';
import { writeUniqueQueries } from './workloads.js';

/**
 * How the first upstream is dead: `silent`, a bound socket that reads and never answers (a
 * crashed resolver behind a live host, or packets dropped on the way: each attempt costs a
 * timeout), or `closed`, a port nothing listens on (loopback answers ICMP port unreachable at once).
 */
export type DeadKind = 'silent' | 'closed';

export interface DeadUpstreamRow {
  server: string;
  /** Queries per second sent (dnsperf -Q), the same for every row. */
  rate: number;
  sent: number;
  completed: number;
  /** Unanswered within dnsperf's 2 s. */
  lost: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  rcodes: Record<string, number>;
  /** Unanswered within 2 s in the warm-up: the cost of learning the first upstream is dead. */
  warmupLost: number;
  warmupSent: number;
  /** Queries and TCP connections the dead upstream received during the measured run (silent only). */
  deadReceived: number | null;
  /** ...of which root questions (linedns's health probes, ". NS"). */
  deadProbes: number | null;
}

export interface DeadUpstreamResult {
  kind: DeadKind;
  seconds: number;
  warmupSeconds: number;
  rows: DeadUpstreamRow[];
  skipped: string[];
}

/** A loopback port that swallows UDP queries and TCP connections, counting them. */
async function blackhole(): Promise<{ port: number; received: () => number; probes: () => number; close: () => Promise<void> }> {
  const port = await freePort();
  let count = 0;
  let root = 0;
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg) => {
    count++;
    // A question for the root: its name is the single zero octet after the header.
    if (msg.length > 12 && msg[12] === 0) root++;
  });
  await new Promise<void>((r) => udp.bind(port, LOOPBACK, () => r()));
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((s) => {
    count++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => tcp.listen(port, LOOPBACK, () => r()));
  return {
    port,
    received: () => count,
    probes: () => root,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

export function deadKind(): DeadKind {
  const k = process.env.BENCH_DEAD_KIND ?? 'silent';
  if (k !== 'silent' && k !== 'closed') throw new Error(`BENCH_DEAD_KIND=${k}: expected silent or closed`);
  return k;
}

/**
 * Starts each server with [dead, nsd], warms it at the fixed rate (each learns the dead one is
 * dead its own way: linedns marks it down, Unbound's infrastructure cache backs off), then
 * measures one fixed-rate run of unique names with per-query latencies. Servers take turns, one
 * at a time, so neither competes with the other for the CPUs.
 */
export async function deadUpstreamStep(env: PeerEnv, o: BenchOptions, log: (s: string) => void): Promise<DeadUpstreamResult> {
  const kind = deadKind();
  const rate = Number(process.env.BENCH_DEAD_RATE ?? 2000);
  if (!Number.isFinite(rate) || rate < 1) throw new Error(`BENCH_DEAD_RATE=${process.env.BENCH_DEAD_RATE}: expected a rate >= 1`);
  const result: DeadUpstreamResult = { kind, seconds: o.seconds, warmupSeconds: o.warmupSeconds, rows: [], skipped: [] };
  const hole = kind === 'silent' ? await blackhole() : null;
  const deadPort = hole?.port ?? (await freePort());
  const live = env.nsdPort;
  const servers: Array<{ name: string; start: () => Promise<Running> }> = [
    { name: 'linedns', start: () => startLineDns(env, { name: 'linedns', upstreams: [`${LOOPBACK}:${deadPort}`, `${LOOPBACK}:${live}`] }) },
  ];
  if (commandExists('unbound') !== null) servers.push({ name: 'unbound', start: () => startUnbound(env, [`${LOOPBACK}@${deadPort}`, `${LOOPBACK}@${live}`]) });
  else result.skipped.push('unbound (not installed)');
  try {
    for (const s of servers) {
      let running: Running | null = null;
      try {
        running = await s.start();
        const base = { port: running.port, clients: o.clients, outstanding: o.outstanding, maxQps: rate, once: true };
        const warm = await writeUniqueQueries(env.data.dir, Math.ceil(rate * o.warmupSeconds * 1.05) + 100);
        const w = await dnsperf({ ...base, queryFile: warm, seconds: o.warmupSeconds });
        const file = await writeUniqueQueries(env.data.dir, Math.ceil(rate * o.seconds * 1.05) + 100);
        const before = hole?.received() ?? 0;
        const probesBefore = hole?.probes() ?? 0;
        const r = await dnsperf({ ...base, queryFile: file, seconds: o.seconds, latencies: true });
        const row: DeadUpstreamRow = {
          server: s.name,
          rate,
          sent: r.sent,
          completed: r.completed,
          lost: r.lost,
          p50Ms: r.p50Ms ?? NaN,
          p99Ms: r.p99Ms ?? NaN,
          p999Ms: r.p999Ms ?? NaN,
          rcodes: r.rcodes,
          warmupLost: w.lost,
          warmupSent: w.sent,
          deadReceived: hole === null ? null : hole.received() - before,
          deadProbes: hole === null ? null : hole.probes() - probesBefore,
        };
        result.rows.push(row);
        log(`dead upstream (${kind}): ${s.name} at ${rate} qps: p50 ${row.p50Ms.toFixed(3)} ms, p99 ${row.p99Ms.toFixed(3)} ms, lost ${row.lost}/${row.sent} (warm-up ${row.warmupLost}/${row.warmupSent}), the dead one received ${row.deadReceived ?? '-'} (${row.deadProbes ?? '-'} root probes)`);
      } catch (err) {
        result.skipped.push(`${s.name} (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
        log(`dead upstream: ${s.name} failed: ${String(err)}`);
      } finally {
        if (running !== null) await running.stop();
      }
    }
  } finally {
    await hole?.close();
  }
  return result;
}

const ms = (x: number): string => (!Number.isFinite(x) ? '-' : x >= 100 ? '>= 100' : x.toFixed(3));

/** The section of docs/benchmarks.md for this workload. */
export function deadUpstreamMarkdown(r: DeadUpstreamResult): string {
  const out: string[] = [];
  const how = r.kind === 'silent' ? 'a loopback port that reads queries and never answers' : 'a loopback port nothing listens on (ICMP port unreachable)';
  out.push(
    `Each server forwards to [${how}, nsd], in that order, with its defaults otherwise (linedns: policy sequential, each attempt waiting the upstream's RTO (376 ms untried, doubled per timeout, at least 200 ms, at most the 2 s timeout), marked down after 3 failures, probed every 0.5 s; Unbound: its infrastructure cache's RTT and back-off). ${r.rows[0]?.rate ?? '-'} qps of unique names (every one a cache miss) for ${r.seconds} s, after a ${r.warmupSeconds} s warm-up at the same rate; one server at a time. Latencies over 100 ms are binned together by the harness (dnsperf reports none); lost = no answer within dnsperf's 2 s.`,
  );
  out.push('');
  out.push('| server | p50 ms | p99 ms | p99.9 ms | lost / sent | rcodes | warm-up lost / sent | the dead upstream received (of which `. NS` probes) |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const row of r.rows) {
    const rc = Object.entries(row.rcodes).map(([k, v]) => `${k} ${v}`).join(', ') || '-';
    out.push(`| ${row.server} | ${ms(row.p50Ms)} | ${ms(row.p99Ms)} | ${ms(row.p999Ms)} | ${row.lost} / ${row.sent} | ${rc} | ${row.warmupLost} / ${row.warmupSent} | ${row.deadReceived ?? '-'} (${row.deadProbes ?? '-'}) |`);
  }
  if (r.skipped.length > 0) out.push('', `Not run: ${r.skipped.join('; ')}.`);
  return out.join('\n');
}
