// `linedns test` and the `tests` key: golden queries with mock upstream answers, their diffs and
// exit codes, a labelled record seen from two clients, and a reload whose tests fail refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { answerData, query } from './helpers/client.js';
import { writeConfig, type TestFiles } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import { Repository } from './helpers/repository.js';
import { portOf, serve, until } from './helpers/serve.js';
import { loadForStart } from '../src/app/sources.js';
import { Metrics } from '../src/lib/metrics.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = new URL('../src/cli.js', import.meta.url).pathname;

/** Without blocking this process: a test upstream here must be able to answer --live. */
function run(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'test', ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const FILES: TestFiles = {
  config: { upstreams: ['127.0.0.1:9'], allow: ['10.0.0.0/8', '127.0.0.0/8'], smartLineUnmatched: 'unlabelled' },
  records: [
    { name: 'app.example.com', type: 'A', rdata: '10.1.0.7', labels: ['office'] },
  ],
  smartLine: { office: ['10.1.0.0/16'] },
};

const MOCK = {
  'app.example.com A': { answers: ['192.0.2.7'] },
  'www.example.org A': { answers: ['192.0.2.80', '192.0.2.81'], ttl: 60 },
  'gone.example.org A': { rcode: 'NXDOMAIN' },
  'example.org MX': { answers: ['10 mail.example.org.', '20 mx2.example.org.'] },
};

const PASSING = {
  mock: MOCK,
  tests: [
    // One labelled name, two clients: the office sees its address, everyone else the upstream's.
    { client: '10.1.2.3', name: 'app.example.com', expect: { rcode: 'NOERROR', answers: ['10.1.0.7'], stage: 'smartline' } },
    { client: '127.0.0.1', name: 'app.example.com', expect: { rcode: 'NOERROR', answers: ['192.0.2.7'], stage: 'forward' } },
    // Answers compare as a set: any order.
    { client: '127.0.0.1', name: 'www.example.org', expect: { rcode: 'NOERROR', answers: ['192.0.2.81', '192.0.2.80'], stage: 'forward' } },
    { client: '127.0.0.1', name: 'gone.example.org', type: 'A', expect: { rcode: 'NXDOMAIN', answers: [] } },
    { client: '127.0.0.1', name: 'example.org', type: 'MX', expect: { rcode: 'NOERROR', answers: ['20 mx2.example.org.', '10 mail.example.org.'] } },
  ],
};

function withTests(tests: object, config: Record<string, unknown> = {}): { dir: string; configFile: string; testsFile: string } {
  const files = writeConfig({ ...FILES, config: { ...FILES.config, ...config }, extra: { 'golden.json': JSON.stringify(tests, null, 2) } });
  return { ...files, testsFile: join(files.dir, 'golden.json') };
}

test('all pass: one ok line per test, a total, exit 0 (mock answers, NXDOMAIN, a labelled record from two clients)', async () => {
  const { configFile, testsFile } = withTests(PASSING);
  const res = await run(['--config', configFile, testsFile]);
  assert.equal(res.status, 0, res.stdout + res.stderr);
  assert.deepEqual(res.stdout.trimEnd().split('\n'), [
    'ok    app.example.com A from 10.1.2.3',
    'ok    app.example.com A from 127.0.0.1',
    'ok    www.example.org A from 127.0.0.1',
    'ok    gone.example.org A from 127.0.0.1',
    'ok    example.org MX from 127.0.0.1',
    '5 passed, 0 failed',
  ]);
});

test('the config\'s "tests" key is the default tests file', async () => {
  const { configFile } = withTests(PASSING, { tests: 'golden.json' });
  const res = await run(['--config', configFile]);
  assert.equal(res.status, 0, res.stdout + res.stderr);
  assert.match(res.stdout, /^5 passed, 0 failed$/m);
});

test('a failure: FAIL and a diff of rcode, answers missing and added, and stage; exit 1', async () => {
  const { configFile, testsFile } = withTests({
    mock: MOCK,
    tests: [
      { client: '10.1.2.3', name: 'app.example.com', expect: { rcode: 'NOERROR', answers: ['10.1.0.7'] } },
      { client: '10.1.2.3', name: 'app.example.com', expect: { rcode: 'NXDOMAIN', answers: ['192.0.2.7'], stage: 'forward' } },
    ],
  });
  const res = await run(['--config', configFile, testsFile]);
  assert.equal(res.status, 1, res.stderr);
  assert.deepEqual(res.stdout.trimEnd().split('\n'), [
    'ok    app.example.com A from 10.1.2.3',
    'FAIL  app.example.com A from 10.1.2.3',
    '      rcode:   expected NXDOMAIN, got NOERROR',
    '      answers: missing 192.0.2.7',
    '      answers: added   10.1.0.7',
    '      stage:   expected forward, got smartline',
    '1 passed, 1 failed',
  ]);
});

test('a test with a client subnet (ecs) from a trusted proxy is classified by the subnet', async () => {
  const { configFile, testsFile } = withTests(
    { mock: MOCK, tests: [{ client: '127.0.0.1', name: 'app.example.com', ecs: '10.1.0.0/24', expect: { rcode: 'NOERROR', answers: ['10.1.0.7'], stage: 'smartline' } }] },
    { trustEcsFrom: ['127.0.0.1/32'] },
  );
  const res = await run(['--config', configFile, testsFile]);
  assert.equal(res.status, 0, res.stdout + res.stderr);
  assert.match(res.stdout, /^ok    app\.example\.com A from 127\.0\.0\.1 \(client subnet 10\.1\.0\.0\/24\)$/m);
});

test('a name not in mock fails with whom it would ask; --live asks that upstream for real', async () => {
  const up = await TestUpstream.start(simpleHandler('198.51.100.9'));
  try {
    const { configFile, testsFile } = withTests({ tests: [{ client: '127.0.0.1', name: 'live.example.org', expect: { rcode: 'NOERROR', answers: ['198.51.100.9'] } }] }, { upstreams: [`127.0.0.1:${up.port}`] });
    const offline = await run(['--config', configFile, testsFile]);
    assert.equal(offline.status, 1, offline.stderr);
    assert.match(offline.stdout, new RegExp(`would ask upstream 127\\.0\\.0\\.1:${up.port} for "live\\.example\\.org A": add it to mock or run with --live`));
    assert.equal(up.requests.length, 0, 'nothing was sent offline');
    const live = await run(['--config', configFile, testsFile, '--live']);
    assert.equal(live.status, 0, live.stdout + live.stderr);
  } finally {
    await up.close();
  }
});

test('a tests file that breaks its schema: FILE:LINE:COL and exit 2; no tests at all is a usage error', async () => {
  const { configFile, testsFile } = withTests({ tests: [{ client: '10.1.2.3', name: 'app.example.com', expect: { rcode: 'NOERROR', answer: [] } }] });
  const res = await run(['--config', configFile, testsFile]);
  assert.equal(res.status, 2, res.stdout);
  assert.match(res.stderr, /golden\.json:8:9: error: \$\.tests\[0\]\.expect\.answer: unknown property "answer" \(did you mean "answers"\?\).* \[LDNS_SCHEMA_UNKNOWN_PROPERTY\]/);
  const none = await run(['--config', configFile]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /no tests: .* \[LDNS_CLI_USAGE\]/);
});

test('a mock answer that does not parse, and a client that is no address: LDNS_GOLDEN_VALUE at each', async () => {
  const { configFile, testsFile } = withTests({ mock: { 'a.example.org A': { answers: ['not-an-ip'] } }, tests: [{ client: 'office', name: 'a.example.org', expect: { rcode: 'NOERROR' } }] });
  const res = await run(['--config', configFile, testsFile]);
  assert.equal(res.status, 2, res.stdout);
  assert.match(res.stderr, /golden\.json:5:9: error: \$\.mock\["a\.example\.org A"\]\.answers\[0\]: "not-an-ip" is not A data.*\[LDNS_GOLDEN_VALUE\]/);
  assert.match(res.stderr, /golden\.json:11:17: error: \$\.tests\[0\]\.client: "office" is not an IP address.*\[LDNS_GOLDEN_VALUE\]/);
});

function capturingLogger(): { logger: pino.Logger; lines: Array<{ msg: string; reason?: string; errors?: string[] }> } {
  const lines: Array<{ msg: string; reason?: string; errors?: string[] }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
  return { logger, lines };
}

test('a reload whose golden tests fail is not applied: logged, counted, the old answer still served', async () => {
  const golden = { tests: [{ client: '127.0.0.1', name: 'r.test', expect: { rcode: 'NOERROR', answers: ['192.0.2.1'] } }] };
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], tests: 'golden.json' }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }], extra: { 'golden.json': JSON.stringify(golden) } });
  const { logger, lines } = capturingLogger();
  const server = await LineDnsServer.start(loadConfig(files.configFile).config, { logger });
  try {
    writeFileSync(join(files.dir, 'records.json'), JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.2' }]));
    const before = lines.length;
    assert.equal(await server.reloadFromFile(), false);
    const logged = lines.slice(before);
    assert.deepEqual(logged.map((l) => l.msg), ['reload failed; keeping the last good configuration']);
    assert.equal(logged[0]!.reason, 'golden tests failed');
    assert.deepEqual(logged[0]!.errors, ['r.test A from 127.0.0.1: answers: missing 192.0.2.1; answers: added   192.0.2.2']);
    assert.equal(server.metrics.counter('config_reload_failures_total', '').value, 1);
    assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), ['192.0.2.1']);
    // The tests updated with the data: the reload goes through.
    writeFileSync(join(files.dir, 'golden.json'), JSON.stringify({ tests: [{ ...golden.tests[0], expect: { rcode: 'NOERROR', answers: ['192.0.2.2'] } }] }));
    assert.equal(await server.reloadFromFile(), true);
    assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), ['192.0.2.2']);
  } finally {
    await server.close();
  }
});

/** The worked example of docs/operations.md's "Golden queries": its files by marker, and the output shown. */
function docBlocks(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const out = new Map<string, string>();
  for (const m of text.matchAll(/<!-- (example: golden file: (\S+)|example: none a tests file[^>]*|golden: output) -->\n```\w*\n([\s\S]*?)```/g)) {
    out.set(m[2] ?? (m[1]!.startsWith('golden') ? 'output' : 'golden.json'), m[3]!);
  }
  return out;
}

test("docs/operations.md's golden queries example runs as shown", async () => {
  const blocks = docBlocks();
  for (const k of ['linedns.json', 'records.json', 'smart-line.json', 'golden.json', 'output']) assert.ok(blocks.has(k), `docs/operations.md shows ${k}`);
  // The doc's config with a loopback upstream that is never asked: every forwarded name is mocked.
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], ...(JSON.parse(blocks.get('linedns.json')!) as Record<string, unknown>) } });
  for (const k of ['records.json', 'smart-line.json', 'golden.json']) writeFileSync(join(files.dir, k), blocks.get(k)!);
  const res = await run(['--config', files.configFile, join(files.dir, 'golden.json')]);
  const shown = blocks.get('output')!.split('\n').filter((l) => !l.startsWith('$ ')).join('\n');
  assert.equal(res.stdout, shown, res.stderr);
  assert.equal(res.status, 1);
});

const R_TEST_GOLDEN = { tests: [{ client: '127.0.0.1', name: 'r.test', expect: { rcode: 'NOERROR', answers: ['192.0.2.1'] } }] };

test('at start: a config whose own golden tests fail is not served (serve exits 1 and says why)', async () => {
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], tests: 'golden.json' }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.9' }], extra: { 'golden.json': JSON.stringify(R_TEST_GOLDEN) } });
  const out = await new Promise<{ status: number; text: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'serve', '--config', files.configFile], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, text: stdout + stderr });
    });
  });
  assert.equal(out.status, 1);
  assert.match(out.text, /golden tests failed; not serving this configuration/);
  assert.match(out.text, /r\.test A from 127\.0\.0\.1: answers: missing 192\.0\.2\.1/);
  assert.match(out.text, /linedns: the golden tests of .*golden\.json failed/);
  assert.doesNotMatch(out.text, /linedns ready/);
});

test('at start with a URL source: fetched documents whose tests fail are not served; the last good copy (which passed) is', async () => {
  const repo = await Repository.start();
  try {
    repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }]));
    const state = mkdtempSync(join(tmpdir(), 'linedns-state-'));
    const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], tests: 'golden.json', records: repo.url('/records.json'), sources: { dir: state, interval: 3600 } }, extra: { 'golden.json': JSON.stringify(R_TEST_GOLDEN) } });
    const first = await loadForStart(files.configFile, {}, capturingLogger().logger, new Metrics());
    assert.equal(first.config.records[0]!.rdata, '192.0.2.1');
    // The repository now serves data the tests reject.
    repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.2' }]));
    const { logger, lines } = capturingLogger();
    const metrics = new Metrics();
    const { config, sources } = await loadForStart(files.configFile, {}, logger, metrics);
    assert.equal(config.records[0]!.rdata, '192.0.2.1', 'the last good copy');
    assert.deepEqual(lines.map((l) => l.msg), ['source: new document fetched', 'golden tests failed; not serving this configuration', 'source: the documents fetched at start were refused; starting from the last good copies', 'source: document refused; keeping the last good copy']);
    // Started on it, a reload from the same repository is refused by the gate too (304 now: no reload at all).
    const server = await LineDnsServer.start(config, { logger, metrics, sources });
    try {
      assert.equal(await server.sources.fetchAll(), false);
      assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), ['192.0.2.1']);
      // A document that passes is applied by the next poll.
      repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.1', ttl: 60 }]));
      assert.equal(await server.sources.fetchAll(), true);
      assert.equal(await server.reloadFromFile(), true);
    } finally {
      await server.close();
    }
  } finally {
    await repo.close();
  }
});

test('a URL reload whose golden tests fail is not applied: counted, the last good copy kept', async () => {
  const repo = await Repository.start();
  try {
    repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }]));
    const state = mkdtempSync(join(tmpdir(), 'linedns-state-'));
    const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], tests: 'golden.json', records: repo.url('/records.json'), sources: { dir: state, interval: 3600 } }, extra: { 'golden.json': JSON.stringify(R_TEST_GOLDEN) } });
    const { logger, lines } = capturingLogger();
    const metrics = new Metrics();
    const { config, sources } = await loadForStart(files.configFile, {}, logger, metrics);
    const server = await LineDnsServer.start(config, { logger, metrics, sources });
    try {
      repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.2' }]));
      assert.equal(await server.sources.fetchAll(), true);
      assert.equal(await server.reloadFromFile(), false);
      assert.equal(metrics.get('config_reload_failures_total'), 1);
      assert.equal(metrics.get('source_fetch_failures_total'), 1, 'the refused document counts as a failure of its source');
      assert.ok(lines.some((l) => l.msg === 'reload failed; keeping the last good configuration' && l.reason === 'golden tests failed'));
      assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), ['192.0.2.1']);
      const body = readdirSync(state).find((f) => f.endsWith('.body'))!;
      assert.match(readFileSync(join(state, body), 'utf8'), /192\.0\.2\.1/);
    } finally {
      await server.close();
    }
  } finally {
    await repo.close();
  }
});

test('--workers: the primary runs the gate; a failing reload is not sent to the workers, and their /metrics count it', async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({
    config: { upstreams: [up.address], tests: 'golden.json', watch: false, admin: '127.0.0.1:0' },
    records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }],
    extra: { 'golden.json': JSON.stringify(R_TEST_GOLDEN) },
  });
  const s = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(s);
    const log = (): Array<{ msg: string; admin?: string; reason?: string }> => s.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
    writeFileSync(join(files.dir, 'records.json'), JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.2' }]));
    s.child.kill('SIGHUP');
    await until(async () => log().some((l) => l.msg === 'reload failed; keeping the last good configuration' && l.reason === 'golden tests failed'), 10_000);
    assert.equal(log().filter((l) => l.msg === 'configuration reloaded').length, 0, 'no worker was sent the refused config');
    for (let i = 0; i < 6; i++) assert.deepEqual(answerData(await query(port, { name: 'r.test' })), ['192.0.2.1']);
    const admin = log().find((l) => l.msg === 'admin endpoint listening')!.admin!;
    // Each worker counts the refusal the primary told it of: whichever answers says 1.
    await until(async () => /linedns_config_reload_failures_total 1\b/.test(await (await fetch(`${admin}/metrics`)).text()), 10_000);
    for (let i = 0; i < 4; i++) assert.match(await (await fetch(`${admin}/metrics`)).text(), /linedns_config_reload_failures_total 1\b/);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});
