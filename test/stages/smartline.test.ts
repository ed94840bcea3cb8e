// The smartline stage (the label filter and the view classifier) on real loopback sockets: its
// trustEcsFrom option in both forms, reloads of the lines, its place around records, its counting.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/app/config.js';
import type { SmartLineOptions } from '../../src/stages/smartline/options.js';
import { aRecords, ecsOption } from '../helpers/packets.js';
import { stageOptions, writeConfig } from '../helpers/server.js';
import { ask, geoFiles, INSIDE, LOCAL, NAME, OUTSIDE, PUBLIC, SPLIT, withRig } from '../helpers/split.js';

const T = { timeout: 30_000 };
const UP = ['127.0.0.1:9'];
/** ECS options naming an address of each line of SPLIT. */
const ECS_INSIDE = { options: [ecsOption(1, 24, 0, [10, 1, 5])] };
const ECS_OUTSIDE = { options: [ecsOption(1, 24, 0, [10, 2, 5])] };

test('trustEcsFrom: [] by default; the top-level key; the entry replaces the top-level list', () => {
  const opts = (config: Record<string, unknown>): SmartLineOptions | undefined => stageOptions<SmartLineOptions>(loadConfig(writeConfig({ ...SPLIT, config: { upstreams: UP, ...config } }).configFile).config, 'smartline');
  assert.deepEqual(opts({}), { trustEcsFrom: [] });
  assert.deepEqual(opts({ trustEcsFrom: ['127.0.0.4/32'] }), { trustEcsFrom: ['127.0.0.4/32'] });
  assert.deepEqual(opts({ trustEcsFrom: ['127.0.0.4/32'], pipeline: ['decode', 'records', { smartline: { trustEcsFrom: ['127.0.0.5/32'] } }, 'forward'] }), { trustEcsFrom: ['127.0.0.5/32'] });
});

test('a bad CIDR in trustEcsFrom is reported where it is written, in the entry', () => {
  const { configFile } = writeConfig({ ...SPLIT, config: { upstreams: UP, pipeline: ['decode', 'records', { smartline: { trustEcsFrom: ['10.0.0.0/33'] } }, 'forward'] } });
  assert.throws(() => loadConfig(configFile), /\$\.pipeline\[2\]\.smartline\.trustEcsFrom\[0\]: "10\.0\.0\.0\/33": prefix "\/33" is not 0\.\.32/);
});

test('ECS classifies only clients the entry trusts, not those of the top-level list it replaced', T, async () => {
  const pipeline = ['decode', 'cache', 'records', { smartline: { trustEcsFrom: ['127.0.0.4/32'] } }, 'forward'];
  await withRig({ ...SPLIT, config: { pipeline, trustEcsFrom: ['127.0.0.5/32'], smartLineUnmatched: 'unlabelled', answerMemo: false } }, async (rig) => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.4', ECS_INSIDE)), [`${NAME} ${LOCAL}`], `round ${round}`);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.4', ECS_OUTSIDE)), [`${NAME} ${PUBLIC}`], `round ${round}`);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.5', ECS_INSIDE)), [`${NAME} ${PUBLIC}`], `round ${round}: ECS from an untrusted sender`);
    }
  });
});

test('no counters of its own: its answers count in records_answered_total, hidden data in records_fallthrough_total', T, async () => {
  await withRig({ ...SPLIT, config: { pipeline: ['decode', 'records', 'smartline', 'forward'], answerMemo: false } }, async (rig) => {
    await ask(rig.ld.port, NAME, INSIDE);
    await ask(rig.ld.port, NAME, OUTSIDE);
    assert.equal(rig.metric('records_answered_total'), 1);
    assert.equal(rig.metric('records_fallthrough_total'), 1);
    assert.deepEqual(Object.keys(rig.ld.server.metrics.snapshot()).filter((k) => k.startsWith('smartline')), []);
  });
});

test('its data key smartLine set while smartline is not in the pipeline: a warning', () => {
  const { configFile } = writeConfig({ config: { upstreams: UP, pipeline: ['decode', 'records', 'forward'] }, smartLine: SPLIT.smartLine, records: [{ name: 'x.example', type: 'A', rdata: '192.0.2.1' }] });
  const { warnings } = loadConfig(configFile);
  assert.deepEqual(warnings.map((w) => w.path), ['$.smartLine']);
});

test('smartline before records: accepted without a warning', () => {
  const { warnings, config } = loadConfig(writeConfig({ ...SPLIT, config: { upstreams: UP, pipeline: ['decode', 'smartline', 'records', 'forward'] } }).configFile);
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.pipeline.map((e) => e.stage), ['decode', 'smartline', 'records', 'forward']);
});

describe('reload in place', T, () => {
  test('changed lines apply on the next query, through the cache (first) and the answer memo', async () => {
    await withRig({ ...SPLIT, config: { smartLineUnmatched: 'unlabelled' } }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${LOCAL}`]);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, OUTSIDE)), [`${NAME} ${PUBLIC}`]);
      // The two clients swap lines.
      writeFileSync(join(rig.ld.dir, 'smart-line.json'), JSON.stringify({ internal: [`${OUTSIDE}/32`], external: [`${INSIDE}/32`] }));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${PUBLIC}`]);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, OUTSIDE)), [`${NAME} ${LOCAL}`]);
    });
  });

  test('a trustEcsFrom added by a reload applies on the next query', async () => {
    await withRig({ ...SPLIT, config: { smartLineUnmatched: 'unlabelled' } }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.4', ECS_INSIDE)), [`${NAME} ${PUBLIC}`]);
      const config = JSON.parse(readFileSync(rig.ld.configFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(rig.ld.configFile, JSON.stringify({ ...config, trustEcsFrom: ['127.0.0.4/32'] }));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.4', ECS_INSIDE)), [`${NAME} ${LOCAL}`]);
    });
  });
});

// Moved from test/label-filter.test.ts.
describe('the label filter on either side of records', T, () => {
  const orders = [
    ['decode', 'records', 'smartline', 'forward'],
    ['decode', 'smartline', 'records', 'forward'],
    ['decode', 'acl', 'ratelimit', 'smartline', 'records', 'cache', 'forward'],
  ];
  for (const pipeline of orders) {
    test(`${pipeline.join(', ')}: each client sees only its lines' records`, async () => {
      await withRig({ ...SPLIT, smartLine: SPLIT.smartLine, config: { pipeline, smartLineUnmatched: 'unlabelled', answerMemo: false } }, async (rig) => {
        for (let round = 0; round < 2; round++) {
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, OUTSIDE)), [`${NAME} ${PUBLIC}`], `round ${round}: the outside client saw the internal record`);
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.9')), [`${NAME} ${PUBLIC}`], `round ${round}: a client in no line saw the internal record`);
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${LOCAL}`], `round ${round}: the inside client`);
        }
      });
    });
  }
});

test('a user classifier (docs/examples/geo-classifier.js) gives two clients two answers', T, async () => {
  const files = geoFiles(['decode', './geo-classifier.js', 'records', 'smartline', 'forward']);
  await withRig(files, async (rig) => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', INSIDE)), ['geo.example 192.0.2.1']);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', OUTSIDE)), ['geo.example 192.0.2.2']);
    }
    // In the example's "lan" line (127.0.0.0/8) but no record for it: upstream.
    assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', '127.0.0.9')), [`geo.example ${PUBLIC}`]);
  });
});
