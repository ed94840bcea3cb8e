// A sidecar's footprint: idle RSS and time to ready of linedns serving the shipped config/, side
// by side with a bare Node process that binds one UDP socket, started alternately in one run.

import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, LOOPBACK, waitForDns } from './net.js';
import type { PeerEnv } from './peers.js';
import { start, stop } from './proc.js';
import { PROBE_NAME } from './workloads.js';

/** One start of one process: milliseconds from exec to its ready line and to its first answer; memory once idle. */
export interface FootprintRun {
  readyMs: number;
  /** linedns only: the first answer (a forwarded query, so through the whole pipeline). */
  answerMs: number | null;
  rssBytes: number;
  /** Private (anonymous) pages: the heap and malloc, this process's alone. */
  anonBytes: number;
  /** File-backed pages, mostly the node binary's code: shared with every other Node process on the host. */
  fileBytes: number;
}

export interface FootprintResult {
  bare: FootprintRun[];
  linedns: FootprintRun[];
  idleMs: number;
}

/**
 * Both processes start without NODE_EXTRA_CA_CERTS, which some hosts set for every process (a
 * whole system CA bundle): Node reads and parses it at start, about 60 ms and 2 MB each here,
 * which a sidecar that fetches nothing over https would not pay.
 */
const START_ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_EXTRA_CA_CERTS'));

/** Idle means: ready, then this long with nothing to do (timers of the start settled, a GC or two). */
const IDLE_MS = 2000;

const BARE = `import dgram from 'node:dgram';
const s = dgram.createSocket('udp4');
s.bind(Number(process.argv[2]), '127.0.0.1', () => console.log('ready'));
`;

function memory(pid: number): { rss: number; anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024;
  const rss = kb('Rss');
  const anon = kb('Anonymous');
  return { rss, anon, file: rss - anon };
}

async function once(cmd: string[], port: number, isLinedns: boolean): Promise<FootprintRun> {
  let readyAt = NaN;
  let buffered = '';
  const t0 = performance.now();
  const p = start(isLinedns ? 'linedns-footprint' : 'bare-footprint', process.execPath, cmd, null, {
    env: START_ENV,
    onStdout: (b) => {
      if (!Number.isNaN(readyAt)) return;
      buffered += b.toString();
      if (/linedns ready|^ready/m.test(buffered)) readyAt = performance.now() - t0;
    },
  });
  try {
    const deadline = performance.now() + 10_000;
    while (Number.isNaN(readyAt) && performance.now() < deadline && p.child.exitCode === null) await new Promise((r) => setTimeout(r, 2));
    if (Number.isNaN(readyAt)) throw new Error(`no ready line in 10 s\n${p.output().slice(-1500)}`);
    const answerMs = isLinedns ? (await waitForDns(port, PROBE_NAME, 10_000, () => p.child.exitCode === null)) + readyAt : null;
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const m = memory(p.pid);
    return { readyMs: readyAt, answerMs, rssBytes: m.rss, anonBytes: m.anon, fileBytes: m.file };
  } finally {
    await stop(p);
  }
}

/**
 * `runs` starts of each, alternating, so both see the same machine. linedns answers one forwarded
 * query before it is measured idle (its first answer time is reported too); the bare process
 * answers nothing.
 */
export async function footprintStep(env: PeerEnv, runs: number): Promise<FootprintResult> {
  const bareFile = join(env.dir, 'bare-udp.mjs');
  writeFileSync(bareFile, BARE);
  const result: FootprintResult = { bare: [], linedns: [], idleMs: IDLE_MS };
  for (let i = 0; i < runs; i++) {
    const barePort = await freePort();
    result.bare.push(await once([bareFile, String(barePort)], barePort, false));
    const port = await freePort();
    const conf = writeShipped(env, port);
    result.linedns.push(await once([join(env.linednsRoot, 'dist/src/cli.js'), 'serve', '--config', conf, '--log-level', 'info'], port, true));
  }
  return result;
}

/**
 * Copies config/ (linedns.json and the files it names) and changes only what a bench must:
 * one loopback listen address on a free port, and the bench's nsd as the upstream (the shipped
 * "resolv.conf" names this host's resolvers, which a bench must never query).
 */
function writeShipped(env: PeerEnv, port: number): string {
  const src = join(env.linednsRoot, 'config');
  const dir = join(env.dir, `footprint-${port}`);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
  const file = join(dir, 'linedns.json');
  // linedns.json allows comments (JSONC): edit the two keys by text, keeping the rest as shipped.
  let text = readFileSync(file, 'utf8');
  const stringList = (key: string): RegExp => new RegExp(`"${key}"\\s*:\\s*\\[(?:\\s*"[^"]*"\\s*,?)*\\s*\\]`);
  text = text.replace(stringList('listen'), `"listen": ["${LOOPBACK}:${port}"]`);
  text = text.replace(stringList('upstreams'), `"upstreams": ["${LOOPBACK}:${env.nsdPort}"]`);
  writeFileSync(file, text);
  return file;
}
