// The label filter (the smartline stage) and records: records hands on the candidate records of
// a name, smartline keeps what the client's lines may see (after records; before it, records
// filters by the view smartline classified); labelled records and no classifier is refused.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatIssue } from '../src/config/load.js';
import { loadConfig } from '../src/app/config.js';
import { writeConfig } from './helpers/server.js';
import { ask, INSIDE, LOCAL, NAME, OUTSIDE, PUBLIC, SPLIT, geoFiles, withRig } from './helpers/split.js';
import { aRecords } from './helpers/packets.js';


describe('the label filter must follow records', { timeout: 30_000 }, () => {
  test('labelled records and no smartline stage: refused at load, at the records entry, with the reason', () => {
    const { configFile } = writeConfig({ ...SPLIT, config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'records', 'forward'] } });
    let err: unknown;
    try {
      loadConfig(configFile);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, 'the pipeline was accepted');
    const text = err.issues.map(formatIssue).join('\n');
    assert.match(
      text,
      /linedns\.json:\d+:\d+: error: \$\.pipeline\[1\]: "records" needs "view" from a stage in the pipeline: records\.json labels "app\.split\.example" with "internal", .* every client would see every labelled record; expected "smartline" in the pipeline/,
    );
  });

  test('without labelled records, records alone is fine', () => {
    const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'records', 'forward'] }, records: [{ name: 'x.example', type: 'A', rdata: '192.0.2.1' }] });
    assert.deepEqual(loadConfig(configFile).config.pipeline.map((e) => e.stage), ['decode', 'records', 'forward']);
  });

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

test('a user classifier (docs/examples/geo-classifier.js) gives two clients two answers', { timeout: 30_000 }, async () => {
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


