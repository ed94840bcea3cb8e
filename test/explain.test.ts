// `linedns explain`: each stage's part (lines and the CIDR that matched, candidates shown and
// hidden, cache, upstream), offline unless --live, full rdata, JSON, and bad requests refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeConfig, type TestFiles } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import type { Explanation } from '../src/app/explain.js';

const CLI = new URL('../src/cli.js', import.meta.url).pathname;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI, 'explain', ...args], { encoding: 'utf8', timeout: 15_000 });
}

/** Without blocking this process: a test upstream here must be able to answer. */
function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'explain', ...args], { encoding: 'utf8', timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const FILES: TestFiles = {
  config: { upstreams: ['127.0.0.1:9'], allow: ['10.0.0.0/8', '127.0.0.0/8'], trustEcsFrom: ['127.0.0.1/32'] },
  records: [
    { name: 'svc.test', type: 'A', rdata: '10.9.0.1', labels: ['inside'] },
    { name: 'svc.test', type: 'A', rdata: '10.8.0.1', labels: ['lab'] },
    { name: 'zone.test', type: 'SOA', rdata: { mname: 'ns1.zone.test', rname: 'hostmaster.zone.test', serial: 7, refresh: 3600, retry: 600, expire: 86400, minimum: 60 } },
    { name: 'zone.test', type: 'NS', rdata: 'ns1.zone.test' },
  ],
  smartLine: { inside: ['10.9.0.0/16'], lab: ['10.8.0.0/16', '10.9.9.0/24'] },
};

test('a labelled record: the lines, the CIDRs that matched, each candidate shown or hidden, the answer', () => {
  const { configFile } = writeConfig(FILES);
  const res = run(['svc.test', 'A', '--client', '10.9.1.1', '--config', configFile]);
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stdout, /^lines:\s+inside$/m);
  assert.match(res.stdout, /smartline: 10\.9\.1\.1 matches 10\.9\.0\.0\/16 \(inside\)/);
  assert.match(res.stdout, /candidate svc\.test A "10\.9\.0\.1" \(labels \[inside\]\): visible/);
  assert.match(res.stdout, /candidate svc\.test A "10\.8\.0\.1" \(labels \[lab\]\): hidden/);
  assert.match(res.stdout, /cache: miss/);
  assert.match(res.stdout, /^answered:\s+smartline$/m);
  assert.match(res.stdout, /^answer:\s+svc\.test\. 300 IN A 10\.9\.0\.1$/m);
});

test('the most specific line wins, and a trusted client subnet (--ecs) is classified instead of the client', () => {
  const { configFile } = writeConfig(FILES);
  const nested = run(['svc.test', '--client', '10.9.9.9', '--config', configFile]);
  assert.match(nested.stdout, /matches 10\.9\.9\.0\/24 \(lab\), 10\.9\.0\.0\/16 \(inside\)/);
  assert.match(nested.stdout, /^answer:\s+svc\.test\. 300 IN A 10\.8\.0\.1$/m);
  const ecs = run(['svc.test', '--client', '127.0.0.1', '--ecs', '10.8.1.0/24', '--config', configFile]);
  assert.equal(ecs.status, 0, ecs.stderr);
  assert.match(ecs.stdout, /client subnet 10\.8\.1\.0\/24 from trusted 127\.0\.0\.1 matches 10\.8\.0\.0\/16 \(lab\)/);
  assert.match(ecs.stdout, /^answer:\s+svc\.test\. 300 IN A 10\.8\.0\.1$/m);
});

test('a record hidden from every line of the client falls through: offline, forward says whom it would ask', async () => {
  const up = await TestUpstream.start(simpleHandler('198.51.100.9'));
  try {
    const { configFile } = writeConfig({ ...FILES, config: { ...FILES.config, upstreams: [up.address], smartLineUnmatched: 'unlabelled' } });
    const res = run(['svc.test', 'A', '--client', '10.7.0.1', '--config', configFile]);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /smartline: 10\.7\.0\.1 is in no line/);
    assert.match(res.stdout, /candidate svc\.test A "10\.9\.0\.1" \(labels \[inside\]\): hidden/);
    assert.match(res.stdout, new RegExp(`forward: offline: would ask ${up.address.replace(/\./g, '\\.')}/udp`));
    assert.match(res.stdout, /answered:\s+\(not answered: offline: not forwarded; run with --live to ask\)/);
    assert.equal(up.requests.length, 0, 'offline sends nothing');
    const live = await runAsync(['svc.test', 'A', '--client', '10.7.0.1', '--live', '--config', configFile]);
    assert.equal(live.status, 0, live.stderr);
    assert.match(live.stdout, /^answered:\s+forward$/m);
    assert.match(live.stdout, /^answer:\s+svc\.test\. 300 IN A 198\.51\.100\.9$/m);
    assert.equal(up.requests.length, 1);
  } finally {
    await up.close();
  }
});

test('NS and SOA data in full; --json gives the same as a document', () => {
  const { configFile } = writeConfig(FILES);
  const ns = run(['zone.test', 'NS', '--client', '127.0.0.1', '--config', configFile]);
  assert.match(ns.stdout, /^answer:\s+zone\.test\. 300 IN NS ns1\.zone\.test\.$/m);
  const res = run(['nothere.zone.test', 'A', '--client', '127.0.0.1', '--json', '--config', configFile]);
  assert.equal(res.status, 0, res.stderr);
  const e = JSON.parse(res.stdout) as Explanation;
  assert.equal(e.rcode, 'NXDOMAIN');
  assert.deepEqual(e.authority, [{ name: 'zone.test.', ttl: 60, type: 'SOA', data: 'ns1.zone.test. hostmaster.zone.test. 7 3600 600 86400 60' }]);
  assert.deepEqual(e.query, { name: 'nothere.zone.test', type: 'A', client: '127.0.0.1', ecs: null });
  assert.ok(e.flags.includes('aa'));
  assert.ok(e.trace.length > 0);
});

test('a bad --client, --ecs or type is an error, not an unclassified client', () => {
  const { configFile } = writeConfig(FILES);
  for (const [args, message] of [
    [['svc.test', '--client', 'notanip'], /--client "notanip" is not an IP address/],
    [['svc.test', '--client', '10.1.1.1', '--ecs', '10.1.1.0/40'], /--ecs "10\.1\.1\.0\/40" is not a CIDR/],
    [['svc.test', 'BOGUS', '--client', '10.1.1.1'], /unknown record type "BOGUS"/],
  ] as const) {
    const res = run([...args, '--config', configFile]);
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stdout}`);
    assert.match(res.stderr, message);
  }
});

test("docs/operations.md's explain example is what explain prints for the shipped config", () => {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  const m = /^ {6}\$ linedns explain (.+)\n((?: {6}.+\n)+)/m.exec(doc);
  assert.ok(m, 'the example was not found');
  const root = new URL('../../', import.meta.url).pathname;
  const res = spawnSync(process.execPath, [CLI, 'explain', ...m[1]!.split(' ')], { encoding: 'utf8', timeout: 15_000, cwd: root });
  assert.equal(res.status, 0, res.stderr);
  assert.equal(res.stdout, m[2]!.replace(/^ {6}/gm, ''));
});

test('a rewritten name and a zone name: the rule applied, the zone that answered, the answer under the name asked', () => {
  const zone = '$ORIGIN corp.test.\n@ 3600 IN SOA ns.corp.test. hostmaster.corp.test. 1 3600 600 86400 300\n@ 3600 IN NS ns.corp.test.\nns 3600 IN A 192.0.2.53\nwww 600 IN A 192.0.2.80\n';
  const { configFile } = writeConfig({
    config: { upstreams: ['127.0.0.1:9'], rewrite: [{ from: 'www.example.org', to: 'foo.test' }], zones: ['corp.zone'] },
    records: [{ name: 'foo.test', type: 'A', rdata: '198.51.100.20' }],
    extra: { 'corp.zone': zone },
  });
  const rewritten = run(['www.example.org', 'A', '--client', '127.0.0.1', '--config', configFile]);
  assert.equal(rewritten.status, 0, rewritten.stderr);
  assert.match(rewritten.stdout, /rewrite: www\.example\.org asked as foo\.test/);
  assert.match(rewritten.stdout, /^answered:\s+records$/m);
  assert.match(rewritten.stdout, /^answer:\s+www\.example\.org\. 300 IN A 198\.51\.100\.20$/m);
  assert.doesNotMatch(rewritten.stdout, /^(answer|authority|additional):.*foo\.test/m, 'no name under Y reaches the client');
  const zoned = run(['www.corp.test', 'A', '--client', '127.0.0.1', '--json', '--config', configFile]);
  assert.equal(zoned.status, 0, zoned.stderr);
  const e = JSON.parse(zoned.stdout) as Explanation;
  assert.equal(e.answeredBy, 'zones');
  assert.ok(e.trace.some((t) => /^zones: .* from zone corp\.test$/.test(t)), e.trace.join('\n'));
  assert.ok(e.flags.includes('aa'));
  assert.deepEqual(e.answer, [{ name: 'www.corp.test.', ttl: 600, type: 'A', data: '192.0.2.80' }]);
});
