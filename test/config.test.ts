// Config loading: schema and semantic errors name file:line:col, the JSON path, the value and
// what was expected; `linedns check` lists them all and exits 1; flags override the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type ConfigIssue } from '../src/config/load.js';
import { loadConfig } from '../src/app/config.js';
import type { AclOptions } from '../src/stages/acl/options.js';
import type { ForwardOptions } from '../src/stages/forward/options.js';
import { resolvConfNameservers } from '../src/config/resolvconf.js';
import { stageOptions, writeConfig } from './helpers/server.js';

const CLI = new URL('../src/cli.js', import.meta.url).pathname;

function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
  assert.fail('expected a ConfigError');
}

test('the shipped config is valid and serves loopback only', () => {
  const { config } = loadConfig(new URL('../../config/linedns.json', import.meta.url).pathname);
  assert.deepEqual(config.listen, [{ host: '127.0.0.1', port: 5300 }, { host: '::1', port: 5300 }]);
  assert.deepEqual(stageOptions<AclOptions>(config, 'acl')?.allow, ['127.0.0.0/8', '::1/128']);
  assert.ok(config.records.length > 0);
});

test('a bad address in records.json is reported with line:col, path, value and expectation', () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:53'] }, records: [] });
  writeFileSync(
    join(dir, 'records.json'),
    '[\n  { "name": "a.test", "type": "A", "rdata": "192.0.2.1" },\n  { "name": "b.test", "type": "A", "rdata": "999.1.1.1" }\n]\n',
  );
  const [issue] = issuesOf(() => loadConfig(configFile));
  assert.equal(issue!.file, join(dir, 'records.json'));
  assert.equal(issue!.line, 3);
  assert.equal(issue!.column, 45);
  assert.equal(issue!.path, '$[1].rdata');
  assert.match(issue!.message, /"999\.1\.1\.1" is not an IPv4 address/);
});

test('schema errors: unknown key with a suggestion, wrong type, bad enum, all listed', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1'], upstream: ['x'], cache: { maxEntries: 'many' }, logLevel: 'loud' } });
  const issues = issuesOf(() => loadConfig(configFile));
  const text = issues.map((i) => `${i.path} ${i.message}`).join('\n');
  assert.match(text, /\$\.upstream unknown property "upstream" \(did you mean "upstreams"\?\)/);
  assert.match(text, /\$\.cache\.maxEntries "many" is not an integer/);
  assert.match(text, /\$\.logLevel "loud" is not one of/);
  assert.ok(issues.every((i) => i.line > 0 && i.column > 0));
});

test('syntax errors give line and column', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1'] } });
  writeFileSync(configFile, '{\n  "listen": ["127.0.0.1:0"],\n  "upstreams": ["127.0.0.1"]\n  "cache": {}\n}\n');
  const [issue] = issuesOf(() => loadConfig(configFile));
  assert.equal(issue!.line, 4);
  assert.equal(issue!.column, 3);
  assert.match(issue!.message, /expected ','/);
});

test('semantic checks: bad CIDR, bad upstream, unknown stage, TXT too long; unknown label warns', () => {
  const { configFile } = writeConfig({
    config: { upstreams: ['not-an-ip'], allow: ['10.0.0.0/33'], pipeline: ['decode', 'cahce', 'forward'] },
    records: [
      { name: 't.test', type: 'TXT', rdata: 'x'.repeat(300) },
      { name: 'l.test', type: 'A', rdata: '192.0.2.1', labels: ['nowhere'] },
    ],
    smartLine: { office: ['10.0.0.0/8', '10.1.0.0/99'] },
  });
  const issues = issuesOf(() => loadConfig(configFile));
  const text = issues.map((i) => `${i.severity} ${i.path} ${i.message}`).join('\n');
  assert.match(text, /error \$\.upstreams\[0\] "not-an-ip" is not an IP address; expected/);
  assert.match(text, /error \$\.allow\[0\] "10\.0\.0\.0\/33": prefix "\/33" is not 0\.\.32/);
  assert.match(text, /error \$\.pipeline\[1\] unknown stage "cahce" \(did you mean "cache"\?\); expected one of "log", "decode", "acl", /);
  assert.match(text, /error \$\.office\[1\] "10\.1\.0\.0\/99"/);
  assert.match(text, /error \$\[0\]\.rdata a TXT string of 300 octets/);
  assert.match(text, /warning \$\[1\]\.labels\[0\] label "nowhere" is not a line in smart-line\.json/);
});

test('flags override the file', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:53'] } });
  const { config } = loadConfig(configFile, { listen: ['[::1]:0'], upstreams: ['127.0.0.9:5353'], workers: 2 });
  assert.deepEqual(config.listen, [{ host: '::1', port: 0 }]);
  assert.deepEqual(config.upstreams, [{ host: '127.0.0.9', port: 5353, protocol: 'udp' }]);
  assert.equal(config.workers, 2);
});

test('linedns check exits 0 on a valid config and 1 listing every error', () => {
  const good = writeConfig({ config: { upstreams: ['127.0.0.1'] }, records: [{ name: 'a.test', type: 'A', rdata: '192.0.2.1' }] });
  const ok = spawnSync(process.execPath, [CLI, 'check', '--config', good.configFile], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /valid: 1 records/);
  const bad = writeConfig({ config: { upstreams: ['127.0.0.1'], listen: ['nowhere'] }, records: [{ name: 'a.test', type: 'A', rdata: 'x' }, { name: 'b..test', type: 'MX' }] });
  const res = spawnSync(process.execPath, [CLI, 'check', '--config', bad.configFile], { encoding: 'utf8' });
  assert.equal(res.status, 1);
  const lines = res.stderr.trim().split('\n');
  assert.ok(lines.length >= 4, res.stderr);
  assert.ok(lines.every((l) => /^\/.+:\d+:\d+: (error|warning): \$/.test(l)), res.stderr);
  assert.match(res.stderr, /\$\.listen\[0\]: "nowhere" does not match the expected form HOST:PORT/);
  assert.match(res.stderr, /\$\[1\]: missing required property "rdata"/);
});

test('100,000 nested [ in records.json is a file:line:col error for check and serve, not a stack overflow', () => {
  for (const text of ['['.repeat(100_000), `${'['.repeat(100_000)}${']'.repeat(100_000)}`]) {
    const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'] }, records: [] });
    writeFileSync(join(dir, 'records.json'), text);
    const [issue, ...rest] = issuesOf(() => loadConfig(configFile));
    assert.equal(rest.length, 0);
    assert.equal(`${issue!.file}:${issue!.line}:${issue!.column} ${issue!.path}`, `${join(dir, 'records.json')}:1:65 $`);
    assert.match(issue!.message, /nested deeper than 64 levels/);
    for (const command of ['check', 'serve']) {
      const res = spawnSync(process.execPath, [CLI, command, '--config', configFile], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(res.status, 1, `${command}: ${res.stderr}`);
      assert.doesNotMatch(res.stderr, /RangeError/);
      assert.match(res.stderr, /records\.json:1:65: error: \$: invalid JSON: nested deeper than 64 levels/);
    }
  }
});

test('a key twice in one object is an error at the second, naming the first', () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'] }, records: [] });
  writeFileSync(configFile, '{\n  "listen": ["127.0.0.1:0"],\n  "upstreams": ["127.0.0.1:9"],\n  "records": "records.json",\n  "cache": { "maxTtl": 60, "max\\u0054tl": 600 }\n}\n');
  writeFileSync(join(dir, 'records.json'), '[\n  { "name": "a.test", "type": "A", "rdata": "192.0.2.1", "rdata": "192.0.2.2" }\n]\n');
  const issues = issuesOf(() => loadConfig(configFile));
  const text = issues.map((i) => `${i.file.slice(dir.length + 1)}:${i.line}:${i.column} ${i.path} ${i.message}`);
  assert.deepEqual(text, [
    'linedns.json:5:28 $.cache.maxTtl duplicate key "maxTtl" (first at 5:14); expected each key once per object, as only the last one would count',
    'records.json:2:58 $[0].rdata duplicate key "rdata" (first at 2:36); expected each key once per object, as only the last one would count',
  ]);
});

test('invalid UTF-8 is named with its line, column and byte; UTF-16 is named; a leading BOM is accepted', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'] } });
  writeFileSync(configFile, Buffer.concat([Buffer.from('{\n  "listen": ["127.0.0.1:0"],\n  "upstreams": ["127.0.0.1:9"], "logLevel": "é'), Buffer.from([0xc3, 0x28]), Buffer.from('"\n}\n')]));
  const [bad] = issuesOf(() => loadConfig(configFile));
  assert.equal(`${bad!.line}:${bad!.column}`, '3:47');
  assert.match(bad!.message, /invalid UTF-8: byte 0xc3 at offset 78 /);

  writeFileSync(configFile, Buffer.from('\ufeff{"listen": ["127.0.0.1:0"], "upstreams": ["127.0.0.1:9"]}', 'utf16le'));
  const [utf16] = issuesOf(() => loadConfig(configFile));
  assert.match(utf16!.message, /the file is UTF-16 .*; expected UTF-8/);

  writeFileSync(configFile, '\ufeff{"listen": ["127.0.0.1:0"], "upstreams": ["127.0.0.1:9"], "logLevel": "warn"}');
  assert.equal(loadConfig(configFile).config.logLevel, 'warn');
  writeFileSync(configFile, '\ufeff{"listen": ["127.0.0.1:0"], "upstreams": ["127.0.0.1:9"], "logLevel": 5}');
  const [afterBom] = issuesOf(() => loadConfig(configFile));
  assert.equal(`${afterBom!.line}:${afterBom!.column} ${afterBom!.path}`, '1:71 $.logLevel', 'columns count from after the BOM');
});

test('one pass lists every error of a file: schema and semantic errors together', () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'] }, smartLine: { a: ['10.0.0.0/8'] } });
  writeFileSync(configFile, JSON.stringify({ listen: ['127.0.0.1:70000'], upstreams: ['127.0.0.1:9', { port: 5 }, 7], logLevel: 'loud', smartLine: 'smart-line.json' }, null, 2));
  writeFileSync(join(dir, 'smart-line.json'), JSON.stringify({ a: ['10.0.0.0/99'], b: 'x' }));
  const issues = issuesOf(() => loadConfig(configFile));
  const text = issues.map((i) => `${i.path} ${i.message}`).join('\n');
  assert.match(text, /\$\.listen\[0\] "127\.0\.0\.1:70000": port "70000" is not 0\.\.65535/);
  assert.match(text, /\$\.logLevel "loud" is not one of/);
  assert.match(text, /\$\.upstreams\[1\] missing required property "address"/);
  assert.match(text, /\$\.a\[0\] "10\.0\.0\.0\/99"/);
  assert.match(text, /\$\.b "x" is not an array/);
});

test('listen on a wildcard is refused, saying why and what to write, from the file and from --listen', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], listen: ['127.0.0.1:0', '0.0.0.0:5300', '[::]:5300'] } });
  const issues = issuesOf(() => loadConfig(configFile));
  assert.deepEqual(issues.map((i) => `${i.line}:${i.column} ${i.path}`), ['4:5 $.listen[1]', '5:5 $.listen[2]']);
  for (const i of issues) assert.match(i.message, /is a wildcard address: a UDP socket bound to a wildcard answers from whatever source address the kernel picks.*; expected each local address on its own/);
  const [flag] = issuesOf(() => loadConfig(null, { listen: ['0.0.0.0:53'], upstreams: ['127.0.0.1:9'] }));
  assert.equal(flag!.file, '--listen');
  assert.match(flag!.message, /"0\.0\.0\.0:53" is a wildcard address/);
});

test("an upstream equal to one of linedns's own listen addresses is an error", () => {
  const { configFile } = writeConfig({ config: { listen: ['127.0.0.1:5300', '[::1]:5300'], upstreams: ['127.0.0.1:9', { address: '::1', port: 5300 }] } });
  const [issue, ...rest] = issuesOf(() => loadConfig(configFile));
  assert.equal(rest.length, 0);
  assert.equal(issue!.path, '$.upstreams[1]');
  assert.match(issue!.message, /upstream \[::1\]:5300 is one of linedns's own listen addresses/);
  const [flag] = issuesOf(() => loadConfig(configFile, { upstreams: ['localhost:5300'] }));
  assert.equal(flag!.file, '--upstream');
  assert.match(flag!.message, /upstream 127\.0\.0\.1:5300 is one of linedns's own listen addresses/);
  // Another port on the same address is another server.
  assert.equal(loadConfig(configFile, { upstreams: ['127.0.0.1:5301'] }).config.upstreams.length, 1);
});

test('settings of a stage that is not in the pipeline are a warning, in loadConfig and in check', () => {
  const { configFile } = writeConfig({
    config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'acl', 'cache', 'forward'], rateLimit: { qps: 5 }, trustEcsFrom: [] },
  });
  const { warnings } = loadConfig(configFile);
  assert.deepEqual(
    warnings.map((w) => `${w.line}:${w.column} ${w.severity} ${w.path}`),
    ['14:3 warning $.rateLimit', '17:3 warning $.trustEcsFrom'],
  );
  assert.match(warnings[0]!.message, /"rateLimit" is set but the "ratelimit" stage is not in the pipeline, so it has no effect/);
  const res = spawnSync(process.execPath, [CLI, 'check', '--config', configFile], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(res.status, 0, res.stderr);
  assert.match(res.stderr, /linedns\.json:14:3: warning: \$\.rateLimit: "rateLimit" is set but the "ratelimit" stage is not in the pipeline/);
});

test('a value that fits no alternative gets one error saying what was expected, not one per alternative', () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9', '', 7, { port: 5 }] }, records: [] });
  writeFileSync(join(dir, 'records.json'), JSON.stringify([{ name: 't.test', type: 'TXT', rdata: 5 }, { name: 'u.test', type: 'TXT', rdata: [5] }]));
  const issues = issuesOf(() => loadConfig(configFile));
  assert.deepEqual(issues.map((i) => `${i.path}: ${i.message}`), [
    '$.upstreams[1]: expected a non-empty string',
    '$.upstreams[2]: 7 is not a string or an object',
    '$.upstreams[3]: missing required property "address"',
    '$[0].rdata: 5 is not a string or an array',
    '$[1].rdata[0]: 5 is not a string',
  ]);
});

test('forward.sourcePorts: 1024 by default, fewer is a warning that names the entropy lost, 0 an error', () => {
  assert.equal(stageOptions<ForwardOptions>(loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'] } }).configFile).config, 'forward')?.sourcePorts, 1024);
  const few = loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], forward: { sourcePorts: 16 } } }).configFile);
  assert.equal(stageOptions<ForwardOptions>(few.config, 'forward')?.sourcePorts, 16);
  assert.deepEqual(few.warnings.map((w) => `${w.severity} ${w.path}`), ['warning $.forward.sourcePorts']);
  assert.match(few.warnings[0]!.message, /16 source ports leave an off-path forger 16 x 65,536 port and ID combinations per query, fewer than 2\^26/);
  assert.throws(
    () => loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], forward: { sourcePorts: 0 } } }).configFile),
    (err: unknown) => err instanceof ConfigError && err.issues.some((i) => i.path === '$.forward.sourcePorts' && i.severity === 'error'),
  );
});

test('resolv.conf nameservers carry their line and column, and a self-loop through them is reported there', () => {
  const { dir } = writeConfig({ config: { upstreams: ['127.0.0.1:9'] } });
  const conf = join(dir, 'resolv.conf');
  writeFileSync(conf, '# comment\nsearch example\n  nameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver bogus\n');
  assert.deepEqual(resolvConfNameservers(conf), [
    { address: '192.0.2.1', line: 3, column: 14 },
    { address: 'fe80::1', line: 4, column: 12 },
  ]);
  assert.deepEqual(resolvConfNameservers(join(dir, 'missing')), [{ address: '127.0.0.1', line: 0, column: 0 }]);
  // Without an "upstreams" key the resolvers of /etc/resolv.conf are used: listening on the
  // first one's address (only checked, never bound) makes linedns its own upstream.
  const first = resolvConfNameservers()[0]!;
  const host = first.address.includes(':') ? `[${first.address}]` : first.address;
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], listen: [`${host}:53`] } });
  const text = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  delete text.upstreams;
  writeFileSync(configFile, JSON.stringify(text));
  let issues: ConfigIssue[] = [];
  try {
    loadConfig(configFile);
  } catch (err) {
    if (err instanceof ConfigError) issues = err.issues;
  }
  const loop = issues.find((i) => i.file === '/etc/resolv.conf');
  assert.ok(loop, `no error at /etc/resolv.conf: ${JSON.stringify(issues)}`);
  assert.deepEqual([loop.line, loop.column], [first.line, first.column]);
  assert.match(loop.message, /one of linedns's own listen addresses/);
});
