// log stage: one JSON line per reply (pino's line format), memo hits and TC replies included:
// the Twisted query logger's job. It only observes, so the answer memo stays on.

import { dirname, resolve } from 'node:path';
import { LineWriter } from '../../lib/line-writer.js';
import { Rcode, rcodeFromName, rcodeName, typeName } from '../../lib/dns/constants.js';
import { normalizeName } from '../../lib/dns/name.js';
import type { ReplyInfo, Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import type { Counter } from '../../lib/metrics.js';
import { logOptions, type LogOptions } from './options.js';

/** Lines wait in the batch at most this long, so `tail -f` shows a quiet server's queries. */
const FLUSH_MS = 1000;

/** Rcodes that mean the client got no answer it can use: logged at warn. */
function failed(rcode: number): boolean {
  return rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN;
}

function open(o: LogOptions, configFile: string | null, dropped: Counter): LineWriter {
  const path = o.file === null ? null : resolve(configFile ? dirname(configFile) : process.cwd(), o.file);
  return new LineWriter(path, FLUSH_MS, (n) => {
    dropped.value += n;
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
  const dropped = env.metrics.counter('log_dropped_total', 'query log lines dropped: the file could not be written fast enough');
  const written = env.metrics.counter('log_lines_total', 'query log lines written');
  let writer = open(o, env.config.file, dropped);
  let names = nameFilter(o.names);
  let rcodes = o.rcodes.length === 0 ? null : new Set(o.rcodes.map((r) => rcodeFromName(r)!));
  let seen = 0;
  /** observeNext's answer for the reply being sent. */
  let take = true;
  // What is batched belongs to the file being rotated away: written there first, then reopened.
  const reopen = (): void => writer.reopen();
  if (o.file !== null) process.on('SIGUSR1', reopen);

  function write(r: ReplyInfo): void {
    const bad = failed(r.rcode);
    if (!bad && o.level === 'warn') return;
    if (rcodes !== null && !rcodes.has(r.rcode)) return;
    if (names !== null && !names(r.name)) return;
    const ctx = r.context;
    const upstream = ctx?.get('upstream');
    const lines = ctx?.lines?.lines;
    // Written by hand in pino's line format (level 30 info, 40 warn; time in ms): a generic
    // serializer walking an object per query costs more than the rest of a cache hit. Strings
    // that may hold anything (the name, a user stage's name) go through JSON.stringify.
    let line = `{"level":${bad ? 40 : 30},"time":${r.time},"client":"${r.client.address}","port":${r.client.port},"transport":"${r.transport}","id":${r.id},"name":${JSON.stringify(r.name)},"type":"${typeName(r.qtype)}","rcode":"${rcodeName(r.rcode)}","answers":${r.answers},"by":${JSON.stringify(r.memo ? 'memo' : r.answeredBy || 'none')}`;
    if (lines !== undefined) line += `,"lines":${JSON.stringify(lines)}`;
    // The name the rewrite stage asked instead of `name`, when it rewrote this query.
    const rewrite = ctx?.get('rewrite');
    if (rewrite !== undefined) line += `,"rewrite":${JSON.stringify(rewrite.to)}`;
    if (upstream !== undefined) line += `,"upstream":"${upstream.address}","upstreamMs":${Math.round(upstream.ms * 1000) / 1000}`;
    // The cache answered with an expired entry (serve-stale): why, as the cache put it.
    const stale = ctx?.get('stale');
    if (stale !== undefined) line += `,"stale":${JSON.stringify(stale)}`;
    line += `,"tc":${r.truncated},"us":${r.durationUs},"size":${r.size}}\n`;
    writer.write(line);
    written.value++;
  }

  return {
    name: 'log',
    // handle() only passes the query on: the answer memo may answer repeats, which observe() sees.
    observesOnly: true,
    handle(_ctx, next) {
      return next();
    },
    // Sampling decides before the transport describes the reply: 99 replies in 100 cost a count.
    observeNext() {
      take = o.sample === 1 || ++seen % o.sample === 0;
      return take;
    },
    observe(r) {
      if (take) write(r);
    },
    reload(config, next) {
      const reopenFile = next.file !== o.file || next.level !== o.level;
      o = next;
      names = nameFilter(o.names);
      rcodes = o.rcodes.length === 0 ? null : new Set(o.rcodes.map((r) => rcodeFromName(r)!));
      if (reopenFile) {
        const old = writer;
        writer = open(o, config.file, dropped);
        void old.close();
        process.off('SIGUSR1', reopen);
        if (o.file !== null) process.on('SIGUSR1', reopen);
      }
    },
    close() {
      process.off('SIGUSR1', reopen);
      return writer.close();
    },
  };
}

export const logStage: StageDefinition<LogOptions> = {
  name: 'log',
  summary: 'one JSON line per reply (client, name, type, rcode, answering stage, lines, upstream, stale, timing), memo hits included',
  options: logOptions,
  memoSafe: true,
  create: createLogStage,
};
