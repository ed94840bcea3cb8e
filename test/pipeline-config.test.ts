// Stage options and declarations as the loader reads them: options on pipeline entries (over
// the top-level keys, with the schema's defaults), requirements refused with the stage's reason,
// a frozen config, the answer memo decided by the stages' declarations, the generated schema.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, formatIssue, type ConfigIssue } from '../src/config/load.js';
import { loadConfig, linednsSchemaText } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { silentLogger } from '../src/lib/logger.js';
import type { CacheOptions } from '../src/stages/cache/options.js';
import type { ForwardOptions } from '../src/stages/forward/options.js';
import { stageOptions, writeConfig, type TestFiles } from './helpers/server.js';

const UP = ['127.0.0.1:9'];

function errorsOf(files: TestFiles): string[] {
  try {
    loadConfig(writeConfig(files).configFile);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues.filter((i: ConfigIssue) => i.severity === 'error').map((i) => formatIssue(i).replace(/^.*linedns\.json:/, ''));
  }
  assert.fail('the config was accepted');
}

test('options on a pipeline entry: defaults from the schema, the entry over the top-level key', () => {
  const { configFile } = writeConfig({
    config: { upstreams: UP, forward: { timeout: 300, deadline: 700 }, pipeline: ['decode', { cache: { maxEntries: 5 } }, { forward: { deadline: 900 } }] },
  });
  const { config } = loadConfig(configFile);
  assert.deepEqual(stageOptions<CacheOptions>(config, 'cache'), { maxEntries: 5, minTtl: 0, maxTtl: 86400, negativeTtl: 900, staleTtl: 86400, staleClientTimeout: 1800, staleRefreshInterval: 30, prefetch: 0, prefetchPercent: 10 });
  assert.deepEqual(stageOptions<ForwardOptions>(config, 'forward'), {
    timeout: 300,
    minTimeout: 200,
    deadline: 900,
    maxOutstanding: 10000,
    randomizeCase: false,
    sourcePorts: 1024,
    clientSubnet: 'off',
    policy: 'sequential',
    health: { maxFails: 3, checkInterval: 500, probeName: '.', probeType: 'NS' },
  });
  assert.equal(config.pipeline[0]!.options, undefined, 'decode has no options');
});

test('an entry option is checked where it is written: line, column, path and a hint', () => {
  const errors = errorsOf({ config: { upstreams: UP, pipeline: ['decode', { cache: { maxEntrie: 5 } }, { forward: { timeout: 5 } }, { ratelimit: { burst: 3 } }, { nope: {} }] } });
  assert.deepEqual(errors, [
    '12:9: error: $.pipeline[1].cache.maxEntrie: unknown property "maxEntrie" (did you mean "maxEntries"?); expected one of "maxEntries", "minTtl", "maxTtl", "negativeTtl", "staleTtl", "staleClientTimeout", "staleRefreshInterval", "prefetch", "prefetchPercent" [LDNS_SCHEMA_UNKNOWN_PROPERTY]',
    '17:20: error: $.pipeline[2].forward.timeout: 5 is out of range (expected >= 10) [LDNS_SCHEMA_RANGE]',
    '21:20: error: $.pipeline[3].ratelimit: missing required property "qps" [LDNS_SCHEMA_REQUIRED]',
    '26:7: error: $.pipeline[4].nope: unknown property "nope"; expected one of "log", "decode", "acl", "ratelimit", "cache", "rewrite", "records", "zones", "smartline", "forward" [LDNS_SCHEMA_UNKNOWN_PROPERTY]',
  ]);
});

test("a stage's own check runs on the merged options, at the place each value came from", () => {
  const errors = errorsOf({ config: { upstreams: UP, cache: { minTtl: 600 }, pipeline: ['decode', { cache: { maxTtl: 60 } }, 'forward'] } });
  assert.deepEqual(errors, ['9:15: error: $.cache.minTtl: minTtl 600 is above maxTtl 60; expected minTtl <= maxTtl [LDNS_CACHE_TTL_ORDER]']);
});

test('requirements: a stage before the one it needs is refused with its own reason and the fix', () => {
  assert.deepEqual(errorsOf({ config: { upstreams: UP, pipeline: ['acl', 'decode', 'forward'] } }), [
    '9:5: error: $.pipeline[0]: "acl" needs "query" from a stage before it: a refusal echoes the decoded question; expected "decode" before "acl" (it is on the other side now) [LDNS_REQUIREMENT]',
  ]);
  assert.deepEqual(errorsOf({ config: { upstreams: UP, pipeline: ['cache', 'forward'] } }), [
    '9:5: error: $.pipeline[0]: "cache" needs "query" from a stage before it: it looks up the decoded question; expected "decode" before "cache" [LDNS_REQUIREMENT]',
    '10:5: error: $.pipeline[1]: "forward" needs "query" from a stage before it: it forwards the decoded question; expected "decode" before "forward" [LDNS_REQUIREMENT]',
  ]);
});

test("a user module's definition is checked when the pipeline is built: the server refuses to start", async () => {
  const stage = `export default { name: 'needs-candidates', summary: 'test', requires: [{ name: 'candidates', where: 'before', reason: 'it reads what records found' }],
    create: () => ({ name: 'needs-candidates', handle: (ctx, next) => next() }) };`;
  const { configFile } = writeConfig({ config: { upstreams: UP, pipeline: ['decode', './needs.js', 'records', 'forward'] }, extra: { 'needs.js': stage } });
  const { config } = loadConfig(configFile);
  await assert.rejects(LineDnsServer.start(config, { logger: silentLogger() }), /needs\.js: "needs-candidates" needs "candidates" from a stage before it: it reads what records found; expected "records" before "needs-candidates" \(it is on the other side now\)/);
});

test('the loaded config is frozen all the way down', () => {
  const { config } = loadConfig(writeConfig({ config: { upstreams: UP } }).configFile);
  assert.ok(Object.isFrozen(config) && Object.isFrozen(config.pipeline) && Object.isFrozen(config.pipeline[3]!.options));
  assert.throws(() => {
    (stageOptions<{ maxEntries: number }>(config, 'cache') as { maxEntries: number }).maxEntries = 1;
  }, TypeError);
});

test("the answer memo follows the stages' declarations: a rate limit with options turns it off", async () => {
  const memoOf = async (config: Record<string, unknown>, extra?: Record<string, string>): Promise<boolean> => {
    const { config: c } = loadConfig(writeConfig({ config: { upstreams: UP, ...config }, extra }).configFile);
    const server = await LineDnsServer.start(c, { logger: silentLogger() });
    const on = server.engine.memo !== null;
    await server.close();
    return on;
  };
  assert.equal(await memoOf({}), true, 'the default pipeline: ratelimit without options is off');
  assert.equal(await memoOf({ pipeline: ['decode', { ratelimit: { qps: 10 } }, 'cache', 'forward'] }), false, 'a limit counts every query');
  assert.equal(await memoOf({ rateLimit: { qps: 10 } }), false, 'the top-level key too');
  const plain = `export default () => ({ name: 'plain', handle: (ctx, next) => next() });`;
  const declared = `export default { name: 'safe', summary: 't', memoSafe: true, create: () => ({ name: 'safe', handle: (ctx, next) => next() }) };`;
  assert.equal(await memoOf({ pipeline: ['decode', './plain.js', 'forward'] }, { 'plain.js': plain }), false, 'an unknown user stage');
  assert.equal(await memoOf({ pipeline: ['decode', './safe.js', 'forward'] }, { 'safe.js': declared }), true, 'a user definition that says memoSafe');
});

test('schemas/linedns.schema.json is the schema the stages compose (npm run schemas writes it)', () => {
  const file = readFileSync(new URL('../../schemas/linedns.schema.json', import.meta.url), 'utf8');
  assert.equal(file, linednsSchemaText(), 'out of date: run `npm run schemas` and commit schemas/linedns.schema.json');
});
