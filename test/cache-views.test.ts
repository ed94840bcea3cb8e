// The line-aware cache: with the cache first in the pipeline (the default), an answer that
// depended on the client's view is kept for that view only, other answers are shared; local
// answers are cached with their configured TTL and a reload of local data applies at once.
// The cache may sit anywhere around records and smartline; a user classifier works with it too.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PIPELINE } from '../src/config/load.js';
import { ask, INSIDE, LOCAL, NAME, OUTSIDE, PUBLIC, SPLIT, geoFiles, withRig } from './helpers/split.js';
import { aRecords, ecsOption } from './helpers/packets.js';

const PROXY = '127.0.0.4';

describe('cache first: a name local for one line and upstream for the others', { timeout: 30_000 }, () => {
  test('the default pipeline puts the cache first', () => {
    assert.deepEqual(DEFAULT_PIPELINE, ['decode', 'acl', 'ratelimit', 'cache', 'rewrite', 'records', 'zones', 'smartline', 'forward']);
  });

  for (const first of ['inside', 'outside'] as const) {
    test(`${first} client first: neither client ever gets the other's answer, repeats are cache hits`, async () => {
      // answerMemo off: every repeat goes through the pipeline, so the cache answers it.
      await withRig({ ...SPLIT, config: { answerMemo: false } }, async (rig) => {
        const order = first === 'inside' ? [INSIDE, OUTSIDE] : [OUTSIDE, INSIDE];
        for (let round = 0; round < 3; round++) {
          for (const from of order) {
            const m = await ask(rig.ld.port, NAME, from);
            const want = from === INSIDE ? LOCAL : PUBLIC;
            assert.deepEqual(aRecords(m), [`${NAME} ${want}`], `round ${round}: ${from} got another line's answer`);
          }
        }
        assert.equal(rig.up.requests.length, 1, 'only the outside client\'s first query goes upstream');
        assert.equal(rig.metric('cache_hits_total'), 4, 'rounds 2 and 3 are cache hits for both clients');
        assert.equal(rig.metric('cache_stores_total'), 1, 'the upstream answer is stored once');
      });
    });
  }

  test('a cached local answer keeps its configured TTL; an upstream one counts down', async () => {
    await withRig({ ...SPLIT, config: { answerMemo: false } }, async (rig) => {
      await ask(rig.ld.port, NAME, INSIDE);
      await ask(rig.ld.port, NAME, OUTSIDE);
      await new Promise((r) => setTimeout(r, 2100));
      const inside = await ask(rig.ld.port, NAME, INSIDE);
      const outside = await ask(rig.ld.port, NAME, OUTSIDE);
      assert.equal(rig.metric('cache_hits_total'), 2);
      assert.equal(inside.records[0]!.ttl, 60, 'a local answer is served with its configured TTL');
      assert.ok(outside.records[0]!.ttl <= 298, `an upstream answer ages (TTL ${outside.records[0]!.ttl})`);
    });
  });

  test('ECS from a trusted proxy selects the view, per query, through the cache', async () => {
    const inside = { options: [ecsOption(1, 24, 0, [10, 1, 5])] };
    const outside = { options: [ecsOption(1, 24, 0, [10, 2, 5])] };
    await withRig({ ...SPLIT, config: { trustEcsFrom: [`${PROXY}/32`], answerMemo: false } }, async (rig) => {
      for (let round = 0; round < 2; round++) {
        assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, PROXY, outside)), [`${NAME} ${PUBLIC}`], `round ${round}: outside subnet`);
        assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, PROXY, inside)), [`${NAME} ${LOCAL}`], `round ${round}: inside subnet`);
      }
      // The same ECS from an untrusted sender is ignored: 127.0.0.5 is in no line and, with
      // smartLineUnmatched "all", sees the labelled record; it must not get the outside answer.
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.5', outside)), [`${NAME} ${LOCAL}`]);
      assert.equal(rig.up.requests.length, 1);
      assert.equal(rig.metric('cache_hits_total'), 2);
    });
  });

  test('names without local data are shared by every view', async () => {
    await withRig({ ...SPLIT, config: { answerMemo: false } }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'public.example', INSIDE)), [`public.example ${PUBLIC}`]);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'public.example', OUTSIDE)), [`public.example ${PUBLIC}`]);
      assert.equal(rig.up.requests.length, 1, 'the second view got the shared entry');
    });
  });

  test('a reload that changes local data takes effect on the next query', async () => {
    await withRig({ ...SPLIT, config: { answerMemo: false } }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${LOCAL}`]);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'other.example', INSIDE)), [`other.example ${PUBLIC}`]);
      writeFileSync(join(rig.ld.dir, 'records.json'), JSON.stringify([
        { name: NAME, type: 'A', ttl: 60, rdata: '10.0.0.9', labels: ['internal'] },
        { name: 'other.example', type: 'A', rdata: '10.0.0.10' },
      ]));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} 10.0.0.9`], 'the old local answer was served from the cache');
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'other.example', OUTSIDE)), ['other.example 10.0.0.10'], 'the old upstream answer hid the new local record');
    });
  });
});

describe('the cache on either side of records and smartline', { timeout: 30_000 }, () => {
  const orders = [
    ['decode', 'records', 'cache', 'smartline', 'forward'],
    ['decode', 'smartline', 'cache', 'records', 'forward'],
    ['decode', 'cache', 'smartline', 'records', 'forward'],
    ['decode', 'acl', 'ratelimit', 'smartline', 'records', 'cache', 'forward'],
  ];
  for (const pipeline of orders) {
    test(`${pipeline.join(', ')}: each client sees only its lines' records, also from the cache`, async () => {
      await withRig({ ...SPLIT, config: { pipeline, smartLineUnmatched: 'unlabelled', answerMemo: false } }, async (rig) => {
        for (let round = 0; round < 3; round++) {
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, OUTSIDE)), [`${NAME} ${PUBLIC}`], `round ${round}: the outside client saw the internal record`);
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.9')), [`${NAME} ${PUBLIC}`], `round ${round}: a client in no line saw the internal record`);
          assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${LOCAL}`], `round ${round}: the inside client got an upstream answer`);
        }
        assert.ok(rig.metric('cache_hits_total') >= 4, 'repeats of the upstream answers came from the cache');
      });
    });
  }
});

test('a user classifier (docs/examples/geo-classifier.js) classifies for a cache before it', { timeout: 30_000 }, async () => {
  const files = geoFiles(['decode', './geo-classifier.js', 'cache', 'records', 'smartline', 'forward']);
  await withRig(files, async (rig) => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', INSIDE)), ['geo.example 192.0.2.1']);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', OUTSIDE)), ['geo.example 192.0.2.2']);
    }
    // In the example's "lan" line (127.0.0.0/8) but no record for it: upstream.
    assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', '127.0.0.9')), [`geo.example ${PUBLIC}`]);
    assert.equal(rig.metric('cache_hits_total'), 2, 'the second round came from the cache, per view');
  });
});


