// Child processes the benchmark starts, and what /proc says about them (CPU ticks, RSS).
// Every child is tracked so that a failure or Ctrl-C stops exactly the processes we started.

import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, readFileSync, readdirSync, createWriteStream, type WriteStream } from 'node:fs';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface Started {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Everything the process wrote to stdout and stderr (kept for error messages). */
  output(): string;
  exited: Promise<number | null>;
}

const live = new Set<Started>();

export interface StartOptions {
  /** Receives stdout instead of the log (dnsperf -v writes a line per query). */
  onStdout?: (chunk: Buffer) => void;
  /** The child's environment; default: this process's. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Starts a command with its output captured to a log file (and the first 64 KiB kept in
 * memory), so a server that refuses its config can be diagnosed from the error raised.
 */
export function start(name: string, cmd: string, args: string[], logFile: string | null, opts: StartOptions = {}): Started {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  if (child.pid === undefined) throw new Error(`${name}: cannot start ${cmd}`);
  const log: WriteStream | null = logFile === null ? null : createWriteStream(logFile);
  let kept = '';
  const keep = (b: Buffer): void => {
    log?.write(b);
    if (kept.length < 64 * 1024) kept += b.toString();
  };
  child.stdout?.on('data', opts.onStdout ?? keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => {
      log?.end();
      resolve(code);
    }),
  );
  const s: Started = { name, child, pid: child.pid, output: () => kept, exited };
  live.add(s);
  void exited.then(() => live.delete(s));
  return s;
}

/** PIDs of a process's descendants (cluster workers, nsd's server children), from /proc. */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat) parent.set(Number(entry), stat.ppid);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

interface Stat {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name is in parentheses and may hold spaces: split after its closing one.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

/** CPU seconds (user + system, all threads) used so far by a process and its descendants. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) ticks += readStat(p)?.ticks ?? 0;
  return ticks / CLK_TCK;
}

/** Resident memory in bytes of a process and its descendants. */
export function rssBytes(pid: number): number {
  let kb = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // exited between the listing and the read
    }
  }
  return kb * 1024;
}

/** Running, i.e. neither gone nor a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERM, then SIGKILL after a grace period; descendants are collected first because a killed
 * parent no longer leads to them.
 */
export async function stop(s: Started, graceMs = 3000): Promise<void> {
  const kids = descendants(s.pid);
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && (alive(s.pid) || kids.some(alive))) await sleep(20);
  for (const p of [s.pid, ...kids]) {
    if (alive(p)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await Promise.race([s.exited, sleep(1000)]);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((s) => stop(s, 1500)));
}

/** Synchronous last resort for process exit: no awaiting is possible there. */
export function killAllNow(): void {
  for (const s of live) {
    for (const p of [s.pid, ...descendants(s.pid)]) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

export function commandExists(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    try {
      const p = `${dir}/${cmd}`;
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** A command's version as `pattern` finds it in its output (some print to stderr), or null. */
export function versionOf(cmd: string, args: string[], pattern: RegExp): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  if (r.error) return null;
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return pattern.exec(text)?.[1] ?? null;
}

export { sleep };
