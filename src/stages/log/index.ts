// log stage: one JSON line per reply (pino), memo hits and truncated replies included: the
// Twisted query logger's job, to see which names a host asks. It only observes, so the memo stays on.

import { dirname, resolve } from 'node:path';
import { pino, type DestinationStream, type Logger } from 'pino';
import { Rcode, rcodeFromName, rcodeName, typeName } from '../../lib/dns/constants.js';
import { normalizeName } from '../../lib/dns/name.js';
import type { ReplyInfo, Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { logOptions, type LogOptions } from './options.js';

/** pino's file destination: sonic-boom, with the reopen logrotate needs. */
type FileDestination = DestinationStream & { reopen(): void; flush(cb?: (err?: Error) => void): void; end(): void; once(event: 'close', listener: () => void): unknown };

/** Lines wait in the buffer at most this long, so `tail -f` shows a quiet server's queries. */
const FLUSH_MS = 1000;

/** Rcodes that mean the client got no answer it can use: logged at warn. */
function failed(rcode: number): boolean {
  return rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN;
}

interface Writer {
  logger: Logger;
  destination: FileDestination;
  timer: NodeJS.Timeout;
}

function open(o: LogOptions, configFile: string | null): Writer {
  const dest = o.file === null ? 1 : resolve(configFile ? dirname(configFile) : process.cwd(), o.file);
  // Asynchronous and buffered: a write per query would cost a syscall per query.
  const destination = pino.destination({ dest, sync: false, minLength: 4096, mkdir: true }) as FileDestination;
  // The line carries its own time (when the reply left), so pino's is off.
  const logger = pino({ level: o.level, base: null, timestamp: false }, destination);
  const timer = setInterval(() => flush(destination), FLUSH_MS).unref();
  return { logger, destination, timer };
}

function flush(d: FileDestination, then?: () => void): void {
  try {
    d.flush(then);
  } catch {
    // Not open yet, or ended: nothing buffered can be lost that end() will not write.
    then?.();
  }
}

/** Bound on waiting for the file to close, so a stuck disk cannot hold up a shutdown. */
const CLOSE_WAIT_MS = 2000;

/**
 * Ends the file; resolves once what was buffered is written and the file closed (sonic-boom's
 * 'close'), so a server's close() returns with every line on disk, or after CLOSE_WAIT_MS.
 */
function close(w: Writer): Promise<void> {
  clearInterval(w.timer);
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, CLOSE_WAIT_MS).unref();
    w.destination.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    // end() writes what is buffered, once the file is open.
    w.destination.end();
  });
}

/** A predicate on names: at or under one of `names` (all, when empty). */
function nameFilter(names: readonly string[]): ((name: string) => boolean) | null {
  if (names.length === 0) return null;
  const zones = names.map((n) => normalizeName(n));
  if (zones.includes('.')) return null;
  return (name) => zones.some((z) => name === z || name.endsWith(`.${z}`));
}

function createLogStage(options: LogOptions, env: StageEnv): Stage<LogOptions> {
  let o = options;
  let writer = open(o, env.config.file);
  let names = nameFilter(o.names);
  let rcodes = o.rcodes.length === 0 ? null : new Set(o.rcodes.map((r) => rcodeFromName(r)!));
  let seen = 0;
  // What is buffered belongs to the file being rotated away: written there first, then reopened.
  const reopen = (): void => {
    const w = writer;
    flush(w.destination, () => w.destination.reopen());
  };
  if (o.file !== null) process.on('SIGUSR1', reopen);

  function write(r: ReplyInfo): void {
    const bad = failed(r.rcode);
    if (!bad && o.level === 'warn') return;
    if (rcodes !== null && !rcodes.has(r.rcode)) return;
    if (names !== null && !names(r.name)) return;
    const ctx = r.context;
    const upstream = ctx?.get('upstream');
    const lines = ctx?.lines?.lines;
    const line = {
      time: r.time,
      client: r.client.address,
      port: r.client.port,
      transport: r.transport,
      id: r.id,
      name: r.name,
      type: typeName(r.qtype),
      rcode: rcodeName(r.rcode),
      answers: r.answers,
      by: r.memo ? 'memo' : r.answeredBy || 'none',
      lines: lines === undefined ? undefined : lines,
      // The name the rewrite stage asked instead of `name`, when it rewrote this query.
      rewrite: ctx?.get('rewrite')?.to,
      upstream: upstream?.address,
      upstreamMs: upstream === undefined ? undefined : Math.round(upstream.ms * 1000) / 1000,
      tc: r.truncated,
      us: r.durationUs,
      size: r.size,
    };
    if (bad) writer.logger.warn(line);
    else writer.logger.info(line);
  }

  return {
    name: 'log',
    // handle() only passes the query on: the answer memo may answer repeats, which observe() sees.
    observesOnly: true,
    handle(_ctx, next) {
      return next();
    },
    observe(r) {
      if (o.sample > 1 && ++seen % o.sample !== 0) return;
      write(r);
    },
    reload(config, next) {
      const reopenFile = next.file !== o.file || next.level !== o.level;
      o = next;
      names = nameFilter(o.names);
      rcodes = o.rcodes.length === 0 ? null : new Set(o.rcodes.map((r) => rcodeFromName(r)!));
      if (reopenFile) {
        const old = writer;
        writer = open(o, config.file);
        void close(old);
        process.off('SIGUSR1', reopen);
        if (o.file !== null) process.on('SIGUSR1', reopen);
      }
    },
    close() {
      process.off('SIGUSR1', reopen);
      return close(writer);
    },
  };
}

export const logStage: StageDefinition<LogOptions> = {
  name: 'log',
  summary: 'one JSON line per reply (client, name, type, rcode, answering stage, lines, upstream, timing), memo hits included',
  options: logOptions,
  memoSafe: true,
  create: createLogStage,
};
