// --workers N: a cluster primary that forks N serving processes sharing the listen sockets,
// relays SIGHUP to them, and reports ready once every worker is.

import cluster from 'node:cluster';
import type { Logger } from 'pino';

export interface WorkerReady {
  type: 'linedns-ready';
  addresses: string[];
}

/** Runs in the primary. Resolves when all workers are ready; exits when they all have. */
export function runPrimary(workers: number, logger: Logger, onReady: (addresses: string[]) => void): void {
  let ready = 0;
  let stopping = false;
  let addresses: string[] = [];
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('message', (_worker, msg: WorkerReady) => {
    if (msg?.type !== 'linedns-ready') return;
    addresses = msg.addresses;
    if (++ready === workers) onReady(addresses);
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'worker exited; starting another');
    cluster.fork();
  });
  const stop = (): void => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
}
