// The `linedns serve` process as a user runs it: the ready line, answers over UDP and TCP,
// SIGHUP reload (the last good config stays when the new one is invalid), SIGTERM exits 0.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { answerData, query, resolverFor, tcpExchange, buildQuery, decode } from './helpers/client.js';
import { startLineDns, writeConfig } from './helpers/server.js';
import { portOf, serve, until, type Served } from './helpers/serve.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import { nextRestartDelay, RESTART_MAX_MS, RESTART_MIN_MS, STABLE_MS } from '../src/app/workers.js';

const CLI = new URL('../src/cli.js', import.meta.url).pathname;
const SHIPPED = new URL('../../config/linedns.json', import.meta.url).pathname;

test('serve: ready line lists every address; SIGHUP reloads; an invalid file keeps the last good; SIGTERM exits 0', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({ config: { upstreams: [up.address] }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }] });
  const s = await serve(['--config', files.configFile, '--listen', '127.0.0.1:0', '--listen', '[::1]:0']);
  try {
    assert.equal(s.ready.addresses.length, 4);
    assert.ok(s.ready.addresses.some((a) => a.startsWith('udp://[::1]:')));
    const port = portOf(s);
    assert.equal(portOf(s, 'tcp'), port, 'UDP and TCP share the port');
    assert.deepEqual(await resolverFor(port).resolve4('r.test'), ['192.0.2.1']);
    const [tcp] = await tcpExchange(port, [buildQuery({ name: 'r.test' })]);
    assert.deepEqual(answerData(decode(tcp!)), ['192.0.2.1']);

    writeFileSync(join(files.dir, 'records.json'), JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.2' }]));
    s.child.kill('SIGHUP');
    await until(async () => JSON.stringify(answerData(await query(port, { name: 'r.test' }))) === '["192.0.2.2"]');

    writeFileSync(join(files.dir, 'records.json'), '[{ "name": "r.test", "type": "A", "rdata": "not-an-ip" }]');
    s.child.kill('SIGHUP');
    await until(async () => s.lines.some((l) => l.includes('keeping the last good configuration')));
    const failure = s.lines.find((l) => l.includes('keeping the last good configuration'))!;
    assert.match(failure, /records\.json:1:\d+: error: \$\[0\]\.rdata/);
    assert.deepEqual(answerData(await query(port, { name: 'r.test' })), ['192.0.2.2']);

    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('SIGINT also exits 0', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({ config: { upstreams: [up.address] } });
  const s = await serve(['--config', files.configFile]);
  try {
    s.child.kill('SIGINT');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('the shipped config serves its local records (split by line) with only --listen and --upstream changed', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const s = await serve(['--config', SHIPPED, '--listen', '127.0.0.1:0', '--upstream', up.address]);
  try {
    const port = portOf(s);
    assert.deepEqual(answerData(await query(port, { name: 'example.com' })), ['192.168.139.10']);
    assert.deepEqual(answerData(await query(port, { name: 'example.com' }, { from: '127.0.0.2' })), ['192.168.140.10']);
    assert.equal((await query(port, { name: 'ads.example.net' })).rcode, 'REFUSED');
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('a pipeline entry that is a path loads the user stage of docs/examples', async () => {
  const up = await TestUpstream.start(simpleHandler('203.0.113.5'));
  const example = readFileSync(new URL('../../docs/examples/refuse-any.js', import.meta.url), 'utf8');
  const ld = await startLineDns({
    config: { upstreams: [up.address], pipeline: ['decode', './refuse-any.js', 'cache', 'forward'] },
    extra: { 'refuse-any.js': example },
  });
  try {
    assert.equal((await query(ld.port, { name: 'any.test', type: 'ANY' })).rcode, 'REFUSED');
    assert.equal(ld.server.metrics.get('refuse_any_total'), 1);
    assert.deepEqual(answerData(await query(ld.port, { name: 'a.test' })), ['203.0.113.5'], 'other queries pass through');
  } finally {
    await ld.close();
    await up.close();
  }
});

test('--workers 2 serves from two processes and stops cleanly', async () => {
  const up = await TestUpstream.start(simpleHandler());
  // Reloads by SIGHUP only (no file watch), so each step of this test is one signal's doing.
  const files = writeConfig({ config: { upstreams: [up.address], listen: ['127.0.0.1:0'], watch: false }, records: [{ name: 'w.test', type: 'A', rdata: '192.0.2.44' }] });
  const s = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(s);
    for (let i = 0; i < 20; i++) assert.deepEqual(answerData(await query(port, { name: 'w.test' })), ['192.0.2.44']);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('check and serve take the config file as a positional argument; stray arguments are refused; --version', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({ config: { upstreams: [up.address] }, records: [{ name: 'p.test', type: 'A', rdata: '192.0.2.77' }] });
  const bad = writeConfig({ config: { upstreams: [up.address], logLevel: 'loud' } });
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 });
  try {
    const ok = run('check', files.configFile);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^${files.configFile}: valid: 1 records`));
    const refused = run('check', bad.configFile);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /linedns\.json:\d+:\d+: error: \$\.logLevel: "loud" is not one of .* \[LDNS_SCHEMA_ENUM\]$/m);

    for (const args of [['check', files.configFile, 'extra'], ['check', files.configFile, '--config', files.configFile], ['serve', files.configFile, 'extra'], ['explain', 'a.test', 'A', 'extra', '--client', '127.0.0.1']]) {
      const res = run(...args);
      assert.equal(res.status, 2, `${args.join(' ')}: ${res.stdout}${res.stderr}`);
      assert.match(res.stderr, /^linedns: (unexpected argument|the config file is given twice)/);
    }

    const version = run('--version');
    assert.equal(version.status, 0);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(version.stdout, `linedns ${pkg.version}\n`);

    const s = await serve([files.configFile, '--listen', '127.0.0.1:0']);
    try {
      assert.deepEqual(answerData(await query(portOf(s), { name: 'p.test' })), ['192.0.2.77']);
      s.child.kill('SIGTERM');
      assert.equal(await s.exit, 0);
    } finally {
      s.child.kill('SIGKILL');
    }
  } finally {
    await up.close();
  }
});

test('serve warns at start about settings of a stage that is not in the pipeline', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({ config: { upstreams: [up.address], pipeline: ['decode', 'acl', 'cache', 'forward'], rateLimit: { qps: 1 } } });
  const s = await serve(['--config', files.configFile]);
  try {
    const warning = s.lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => l.level === 40);
    assert.match(warning?.msg ?? '', /linedns\.json:\d+:3: warning: \$\.rateLimit: "rateLimit" is set but the "ratelimit" stage is not in the pipeline/);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

interface LogLine {
  msg: string;
  time: string;
  pid: number;
  worker?: number;
  restartInMs?: number;
}

/** The JSON log lines so far (the lines that are not JSON are the CLI's own stderr). */
function logOf(s: Served): LogLine[] {
  return s.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

async function untilLogged(s: Served, what: string, pred: (l: LogLine[]) => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred(logOf(s))) {
    if (Date.now() > end) assert.fail(`${what} not logged within ${ms} ms:\n${s.lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readyWorkers = (s: Served): number[] => logOf(s).filter((l) => l.msg === 'worker ready').map((l) => l.worker!);

test('--workers: a killed worker is replaced with the last good config, not the broken file; the primary reloads for all', async () => {
  const up = await TestUpstream.start(simpleHandler());
  // Reloads by SIGHUP only (no file watch), so each step of this test is one signal's doing.
  const files = writeConfig({ config: { upstreams: [up.address], listen: ['127.0.0.1:0'], watch: false }, records: [{ name: 'w.test', type: 'A', rdata: '192.0.2.44' }] });
  const s = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(s);
    const first = readyWorkers(s);
    assert.equal(first.length, 2);
    // Broken on disk: a trailing comma in linedns.json, a bad address in records.json.
    writeFileSync(files.configFile, readFileSync(files.configFile, 'utf8').replace(/\n}\s*$/, ',\n}\n'));
    writeFileSync(join(files.dir, 'records.json'), '[{ "name": "w.test", "type": "A", "rdata": "not-an-ip" }]');
    const started = Date.now();
    // One at a time: with port 0, a port whose last worker is gone is not kept for the next one.
    for (const [i, pid] of first.entries()) {
      process.kill(pid, 'SIGKILL');
      await untilLogged(s, `replacement ${i + 1}`, (l) => l.filter((x) => x.msg === 'worker ready').length === 3 + i);
    }
    const elapsed = Date.now() - started;
    // Both original workers are gone: every answer now comes from a replacement.
    for (let i = 0; i < 10; i++) assert.deepEqual(answerData(await query(port, { name: 'w.test' })), ['192.0.2.44']);
    await new Promise((r) => setTimeout(r, 1000));
    const exits = logOf(s).filter((l) => l.msg === 'worker exited; starting another');
    assert.equal(exits.length, 2, `one fork per killed worker in ${elapsed + 1000} ms, not a fork loop`);
    assert.deepEqual(exits.map((e) => e.worker).sort(), [...first].sort());

    s.child.kill('SIGHUP');
    await untilLogged(s, 'the refused reload', (l) => l.some((x) => x.msg === 'reload failed; keeping the last good configuration'));
    writeFileSync(files.configFile, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: [up.address], records: 'records.json', watch: false }));
    writeFileSync(join(files.dir, 'records.json'), JSON.stringify([{ name: 'w.test', type: 'A', rdata: '192.0.2.45' }]));
    s.child.kill('SIGHUP');
    await untilLogged(s, 'the reload', (l) => l.some((x) => x.msg === 'configuration reloaded; sent to the workers'));
    await untilLogged(s, 'both workers reloading', (l) => l.filter((x) => x.msg === 'configuration reloaded').length === 2);
    for (let i = 0; i < 10; i++) assert.deepEqual(answerData(await query(port, { name: 'w.test' })), ['192.0.2.45']);

    // A SIGHUP to a worker itself (a signal to the process group, say) neither kills nor reloads it.
    const before = s.lines.length;
    for (const pid of readyWorkers(s).slice(-2)) process.kill(pid, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(s.lines.slice(before), []);

    for (const line of s.lines.filter((l) => l.startsWith('{'))) assert.equal(line.match(/"pid":/g)?.length, 1, line);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('--workers: a worker that cannot start is restarted with doubling delays, then serves once it can', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const stage = `import { existsSync } from 'node:fs';
export default function createStage() {
  if (existsSync(new URL('./crash', import.meta.url))) throw new Error('crash marker present');
  return { name: 'crashy', async handle(ctx, next) { await next(); } };
}
`;
  const files = writeConfig({
    config: { upstreams: [up.address], listen: ['127.0.0.1:0'], pipeline: ['decode', './crashy.js', 'records', 'forward'] },
    records: [{ name: 'w.test', type: 'A', rdata: '192.0.2.46' }],
    extra: { 'crashy.js': stage },
  });
  const s = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(s);
    writeFileSync(join(files.dir, 'crash'), '');
    process.kill(readyWorkers(s)[0]!, 'SIGKILL');
    const exited = (l: LogLine[]): LogLine[] => l.filter((x) => x.msg === 'worker exited; starting another');
    await untilLogged(s, 'four exits', (l) => exited(l).length >= 4, 15_000);
    rmSync(join(files.dir, 'crash'));
    const exits = exited(logOf(s)).slice(0, 4);
    assert.deepEqual(exits.map((e) => e.restartInMs), [100, 200, 400, 800]);
    for (let i = 1; i < exits.length; i++) {
      const gap = Date.parse(exits[i]!.time) - Date.parse(exits[i - 1]!.time);
      assert.ok(gap >= exits[i - 1]!.restartInMs!, `exit ${i} came ${gap} ms after the one before, under its ${exits[i - 1]!.restartInMs} ms delay`);
    }
    await untilLogged(s, 'a replacement', (l) => l.filter((x) => x.msg === 'worker ready').length === 3, 15_000);
    for (let i = 0; i < 10; i++) assert.deepEqual(answerData(await query(port, { name: 'w.test' })), ['192.0.2.46']);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('restart delays double from 100 ms to 30 s while workers die young, and reset after a stable one', () => {
  let d = 0;
  const seen: number[] = [];
  for (let i = 0; i < 12; i++) seen.push((d = nextRestartDelay(d, 50)));
  assert.deepEqual(seen, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]);
  assert.equal(RESTART_MIN_MS, 100);
  assert.equal(RESTART_MAX_MS, 30_000);
  assert.equal(nextRestartDelay(30_000, STABLE_MS), RESTART_MIN_MS);
  assert.equal(nextRestartDelay(30_000, STABLE_MS - 1), RESTART_MAX_MS);
});
