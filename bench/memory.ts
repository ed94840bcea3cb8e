// Memory and start-up checks: RSS with a full cache (driving the running server through a fake
// upstream), the cache's bound under a flood of unique names, and start-up with big config files.

import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dnsperf } from './dnsperf.js';
import { answerQuery, answerTail, freePort, LOOPBACK, waitForDns } from './net.js';
import { startLineDns, type PeerEnv } from './peers.js';
import { rssBytes, start, stop } from './proc.js';
import { PROBE_NAME, writeBigConfig, writeUniqueQueries } from './workloads.js';

/** An upstream that answers every A query (TTL one day) and counts what it was asked. */
async function fakeUpstream(): Promise<{ port: number; count: () => number; close: () => Promise<void> }> {
  const port = await freePort();
  const socket = dgram.createSocket('udp4');
  const tail = answerTail('10.7.7.7', 86_400);
  let count = 0;
  socket.on('message', (msg, rinfo) => {
    const out = answerQuery(msg, tail);
    if (out === null) return;
    count++;
    socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(port, LOOPBACK, () => resolve()));
  return { port, count: () => count, close: () => new Promise<void>((r) => socket.close(() => r())) };
}

export interface FillStage {
  sent: number;
  /** Queries the upstream answered, i.e. answers the cache was offered. */
  stored: number;
  lost: number;
  seconds: number;
  rssAfterBytes: number;
}

export interface CacheFill {
  maxEntries: number;
  rssBeforeBytes: number;
  stages: FillStage[];
  /** Names of the first stage asked again, and how many of them reached the upstream. */
  firstSample: number;
  firstSampleMisses: number;
  /** Same for the last maxEntries names sent (these must all be cached). */
  lastSample: number;
  lastSampleMisses: number;
}

/** Asks again for `count` names spread over lines [from, to) of a file; returns upstream queries. */
async function reask(env: PeerEnv, port: number, lines: string[], from: number, to: number, count: number, up: { count: () => number }): Promise<{ asked: number; misses: number }> {
  const step = Math.max(1, Math.floor((to - from) / count));
  const picked: string[] = [];
  for (let i = from; i < to && picked.length < count; i += step) if (lines[i]) picked.push(lines[i]!);
  const file = join(env.dir, `reask-${port}-${from}.queries`);
  writeFileSync(file, `${picked.join('\n')}\n`);
  const c0 = up.count();
  await dnsperf({ port, queryFile: file, seconds: 10, clients: 1, outstanding: 20, once: true });
  return { asked: picked.length, misses: up.count() - c0 };
}

/**
 * Sends `stages` batches of `perStage` unique names through one linedns whose cache holds
 * `maxEntries`, noting RSS after each batch; then checks what stayed cached.
 */
export async function fill(env: PeerEnv, maxEntries: number, perStage: number, stages: number): Promise<CacheFill> {
  const up = await fakeUpstream();
  const server = await startLineDns(env, { cacheEntries: maxEntries, upstreamPort: up.port });
  try {
    const rssBeforeBytes = rssBytes(server.pid);
    const file = await writeUniqueQueries(env.dir, perStage * stages, 'fill.test');
    const lines = readFileSync(file, 'utf8').split('\n');
    const out: FillStage[] = [];
    for (let s = 0; s < stages; s++) {
      const stageFile = join(env.dir, `fill-${server.port}-${s}.queries`);
      writeFileSync(stageFile, `${lines.slice(s * perStage, (s + 1) * perStage).join('\n')}\n`);
      const t0 = performance.now();
      const before = up.count();
      // Bounded however slow the server is: at least 2,000 answers a second or the step stops.
      const r = await dnsperf({ port: server.port, queryFile: stageFile, seconds: Math.ceil(perStage / 2000) + 5, clients: 4, outstanding: 200, once: true });
      out.push({ sent: r.sent, stored: up.count() - before, lost: r.lost, seconds: (performance.now() - t0) / 1000, rssAfterBytes: rssBytes(server.pid) });
    }
    const total = perStage * stages;
    // Newest first: re-asking the oldest names puts them back in and evicts some others.
    const last = await reask(env, server.port, lines, Math.max(0, total - Math.min(maxEntries, total)) + Math.floor(maxEntries / 100), total, 200, up);
    const first = await reask(env, server.port, lines, 0, perStage, 200, up);
    return { maxEntries, rssBeforeBytes, stages: out, firstSample: first.asked, firstSampleMisses: first.misses, lastSample: last.asked, lastSampleMisses: last.misses };
  } finally {
    await server.stop();
    await up.close();
  }
}

export interface MemoryResult {
  full: CacheFill;
  /** A small cache flooded with six times its size: RSS must level off after the first fill. */
  bounded: CacheFill;
}

const BOUND_STAGES = 6;

export const storedIn = (f: CacheFill): number => f.stages.reduce((s, x) => s + x.stored, 0);
export const rssAfter = (f: CacheFill): number => f.stages[f.stages.length - 1]?.rssAfterBytes ?? NaN;

export async function memoryStep(env: PeerEnv, entries: number, log: (s: string) => void): Promise<MemoryResult> {
  log(`memory: filling a ${entries}-entry cache`);
  const full = await fill(env, entries, entries, 1);
  log(`memory: ${storedIn(full)} answers stored in ${full.stages[0]!.seconds.toFixed(1)} s, RSS ${(rssAfter(full) / 2 ** 20).toFixed(0)} MB`);
  const bound = Math.max(20_000, Math.floor(entries / 20));
  log(`memory: cache bound, maxEntries ${bound} flooded with ${BOUND_STAGES * bound} names`);
  const bounded = await fill(env, bound, bound, BOUND_STAGES);
  log(`memory: bound: RSS ${bounded.stages.map((x) => (x.rssAfterBytes / 2 ** 20).toFixed(0)).join(' -> ')} MB`);
  return { full, bounded };
}

export interface StartupResult {
  records: number;
  cidrs: number;
  /** Spawn to the "ready" log line, per run; and to the first answer. */
  readyMs: number[];
  answerMs: number[];
  rssBytes: number;
}

/** Start-up with a big records.json and smart-line.json: spawn to the ready log line. */
export async function startupStep(env: PeerEnv, runs: number, records: number, cidrs: number): Promise<StartupResult> {
  const big = writeBigConfig(env.dir, records, cidrs);
  const port = await freePort();
  const conf = join(env.dir, 'linedns-startup.json');
  writeFileSync(conf, JSON.stringify({ listen: [`${LOOPBACK}:${port}`], upstreams: [`${LOOPBACK}:${env.nsdPort}`], records: big.records, smartLine: big.smartLine }));
  const readyMs: number[] = [];
  const answerMs: number[] = [];
  let rss = 0;
  for (let i = 0; i < runs; i++) {
    let readyAt = NaN;
    let buffered = '';
    const t0 = performance.now();
    const p = start('linedns-startup', process.execPath, [join(env.linednsRoot, 'dist/src/cli.js'), 'serve', '--config', conf, '--log-level', 'info'], null, {
      onStdout: (b) => {
        if (!Number.isNaN(readyAt)) return;
        buffered += b.toString();
        if (/linedns ready/.test(buffered)) readyAt = performance.now() - t0;
      },
    });
    try {
      const answered = await waitForDns(port, PROBE_NAME, 60_000, () => p.child.exitCode === null);
      const deadline = performance.now() + 5000;
      while (Number.isNaN(readyAt) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      readyMs.push(readyAt);
      answerMs.push(answered);
      rss = rssBytes(p.pid);
    } catch (err) {
      throw new Error(`linedns did not start with the big config: ${(err as Error).message}\n${p.output().slice(-1500)}`);
    } finally {
      await stop(p);
    }
  }
  return { records, cidrs, readyMs, answerMs, rssBytes: rss };
}
