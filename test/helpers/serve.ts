// Runs `linedns serve` as a user does, in a child process: resolves on its ready line, with the
// lines it logged, so a test can signal it, edit its files and read what it said.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';

const CLI = new URL('../../src/cli.js', import.meta.url).pathname;

export interface Served {
  child: ChildProcess;
  ready: { addresses: string[] };
  lines: string[];
  exit: Promise<number | null>;
}

/** Spawns `linedns serve ...args` (with `env` added to the environment) and resolves on its ready line (bounded by 10 s). */
export function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const lines: string[] = [];
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${lines.join('\n')}`)), 10_000);
    let pending = '';
    const onData = (chunk: Buffer): void => {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        if (line.includes('linedns ready')) {
          clearTimeout(timer);
          resolve({ child, ready: JSON.parse(line) as { addresses: string[] }, lines, exit });
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', () => reject(new Error(`exited before ready: ${lines.join('\n')}`)));
  });
}

export function portOf(served: Served, proto = 'udp'): number {
  const a = served.ready.addresses.find((x) => x.startsWith(`${proto}://127.0.0.1:`))!;
  return Number(a.slice(a.lastIndexOf(':') + 1));
}

export async function until(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail('condition not met in time');
}

