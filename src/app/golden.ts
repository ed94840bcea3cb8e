// Golden queries: each test's query run through a pipeline built from the config (as `explain`
// runs one), upstream answers from the file's mock unless live, compared with what it expects.

import type { Logger } from 'pino';
import { Flag, HEADER_SIZE, QClass, rcodeFromName, typeName } from '../lib/dns/constants.js';
import { keyToWire } from '../lib/dns/name.js';
import type { QueryContext, UpstreamAnswerer } from '../core/context.js';
import { ConfigError, formatIssue } from '../config/load.js';
import { Reporter } from '../config/issues.js';
import { loadGolden, mockRecords } from '../config/golden.js';
import type { GoldenFile, GoldenTest, RuntimeConfig } from '../config/types.js';
import { loadConfig } from './config.js';

export interface GoldenResult {
  test: GoldenTest;
  ok: boolean;
  /** What differs, one line each (empty when ok). */
  diff: string[];
}

/** The wire reply a mock entry gives `ctx.query`: its ID, RD and question, the entry's records. */
function mockReply(ctx: QueryContext, key: string, file: GoldenFile): Buffer {
  const m = file.mock[key]!;
  const q = ctx.query!;
  const recs = mockRecords(key, m);
  // loadGolden refused a file whose answers do not parse, so this holds for a checked file.
  if (!Array.isArray(recs)) throw new Error(`mock "${key}": ${recs.error}`);
  const parts: Buffer[] = [];
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(Flag.QR | (q.flags & Flag.RD) | Flag.RA | (rcodeFromName(m.rcode) ?? 0), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(recs.length, 6);
  parts.push(header, ctx.raw.subarray(HEADER_SIZE, q.questionEnd));
  for (const r of recs) {
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(r.type, 0);
    fixed.writeUInt16BE(QClass.IN, 2);
    fixed.writeUInt32BE(r.ttl, 4);
    fixed.writeUInt16BE(r.rdata.length, 8);
    parts.push(keyToWire(r.name), fixed, r.rdata);
  }
  return Buffer.concat(parts);
}

/** One test: its query through a fresh pipeline (an empty cache, as explain starts with). */
async function runOne(config: RuntimeConfig, file: GoldenFile, t: GoldenTest, live: boolean): Promise<GoldenResult> {
  let wouldAsk: { key: string; upstreams: readonly string[] } | null = null;
  const answerer: UpstreamAnswerer = (ctx, upstreams) => {
    const key = `${ctx.query!.name} ${typeName(ctx.query!.qtype)}`;
    if (file.mock[key] !== undefined) return mockReply(ctx, key, file);
    wouldAsk = { key, upstreams };
    return null;
  };
  // Loaded on first use: the server imports this module for its reload gate, and most configs
  // name no tests, so dns-packet and explain stay out of a server's memory.
  const { explain } = await import('./explain.js');
  const e = await explain(config, { name: t.name, type: t.type ?? 'A', client: t.client, ecs: t.ecs, live }, live ? null : answerer);
  const diff: string[] = [];
  const missed = wouldAsk as { key: string; upstreams: readonly string[] } | null;
  if (missed !== null && e.answeredBy === null) {
    const who = missed.upstreams.length === 0 ? 'no upstream' : `upstream ${missed.upstreams.join(', then ')}`;
    diff.push(`would ask ${who} for "${missed.key}": add it to mock or run with --live`);
    return { test: t, ok: false, diff };
  }
  const got = e.rcode ?? `(no answer: ${e.notAnswered})`;
  if (got !== t.expect.rcode) diff.push(`rcode:   expected ${t.expect.rcode}, got ${got}`);
  if (t.expect.answers !== undefined) {
    const have = new Set(e.answer.map((r) => r.data));
    const want = new Set(t.expect.answers);
    for (const a of want) if (!have.has(a)) diff.push(`answers: missing ${a}`);
    for (const a of have) if (!want.has(a)) diff.push(`answers: added   ${a}`);
  }
  if (t.expect.stage !== undefined && t.expect.stage !== (e.answeredBy ?? '(none)')) diff.push(`stage:   expected ${t.expect.stage}, got ${e.answeredBy ?? '(none)'}`);
  return { test: t, ok: diff.length === 0, diff };
}

/** Every test of `file`, in order, against `config`; offline (mock answers) unless `live`. */
export async function runGolden(config: RuntimeConfig, file: GoldenFile, live = false): Promise<GoldenResult[]> {
  const out: GoldenResult[] = [];
  for (const t of file.tests) out.push(await runOne(config, file, t, live));
  return out;
}

function title(t: GoldenTest): string {
  return `${t.name} ${t.type ?? 'A'} from ${t.client}${t.ecs ? ` (client subnet ${t.ecs})` : ''}`;
}

/** The results as `linedns test` prints them: a line per test, the diff of each failure, a total. */
export function formatResults(results: readonly GoldenResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    out.push(`${r.ok ? 'ok  ' : 'FAIL'}  ${title(r.test)}`);
    for (const d of r.diff) out.push(`      ${d}`);
  }
  const failed = results.filter((r) => !r.ok).length;
  out.push(`${results.length - failed} passed, ${failed} failed`);
  return `${out.join('\n')}\n`;
}

/**
 * Whether a reloaded config passes its own golden tests (offline, from its mock): true without
 * `tests`. On a failure, logs each failing test and its diff.
 */
export async function goldenGate(config: RuntimeConfig, logger: Logger, when: 'reload' | 'start' = 'reload'): Promise<boolean> {
  if (config.tests === null) return true;
  const failed = (await runGolden(config, config.tests)).filter((r) => !r.ok);
  if (failed.length === 0) return true;
  // On reload, the same message as an invalid config's, so each SIGHUP still gets one of the two documented lines.
  logger.error(
    { reason: 'golden tests failed', tests: config.tests.file, errors: failed.map((r) => `${title(r.test)}: ${r.diff.join('; ')}`) },
    when === 'reload' ? 'reload failed; keeping the last good configuration' : 'golden tests failed; not serving this configuration',
  );
  return false;
}

export interface TestCommand {
  configFile: string | null;
  testsFile: string | null;
  live: boolean;
}

/** `linedns test`: prints the results; exit status 0 all passed, 1 a failure, 2 usage or config error. */
export async function testCommand(c: TestCommand, stdout: (s: string) => void, stderr: (s: string) => void): Promise<number> {
  let config: RuntimeConfig;
  try {
    ({ config } = loadConfig(c.configFile));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const i of err.issues) stderr(`${formatIssue(i)}\n`);
    return 2;
  }
  let file = config.tests;
  if (c.testsFile !== null) {
    const report = new Reporter();
    file = loadGolden(c.testsFile, report);
    for (const i of report.issues) stderr(`${formatIssue(i)}\n`);
    if (file === null) return 2;
  }
  if (file === null) {
    stderr(`linedns: no tests: give TESTS.json, or name one with "tests" in the config [LDNS_CLI_USAGE]\n`);
    return 2;
  }
  const results = await runGolden(config, file, c.live);
  stdout(formatResults(results));
  return results.every((r) => r.ok) ? 0 : 1;
}
