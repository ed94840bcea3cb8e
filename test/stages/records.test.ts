// The records stage on real loopback sockets: what it answers and counts, its data keys
// (records, smartLineUnmatched), reloads in place, and the refusal of labelled data without a label filter.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { loadConfig } from '../../src/app/config.js';
import { udpExchange } from '../helpers/client.js';
import { aRecords, mustParse, rawQuery, type CheckedMessage } from '../helpers/packets.js';
import { writeConfig } from '../helpers/server.js';
import { ask, INSIDE, LOCAL, NAME, PUBLIC, SPLIT, withRig } from '../helpers/split.js';

const T = { timeout: 30_000 };
const AA = 0x0400;

let nextId = 300;

async function askType(port: number, name: string, type: number): Promise<CheckedMessage> {
  const id = nextId++;
  const m = mustParse(await udpExchange(port, rawQuery(name, type, { id }), { timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

const RECORDS = [
  { name: 'www.example', type: 'CNAME', rdata: 'web.example' },
  { name: 'web.example', type: 'A', ttl: 120, rdata: '192.0.2.10' },
  { name: 'web.example', type: 'MX', rdata: { preference: 10, exchange: 'mail.example' } },
  { name: '*.apps.example', type: 'A', rdata: '192.0.2.80' },
  { name: 'ads.example', action: 'deny' },
];

test('answers unlabelled data itself with AA, counts answers and fall-throughs; names it lacks cost nothing', T, async () => {
  await withRig({ records: RECORDS, config: { pipeline: ['decode', 'records', 'forward'], answerMemo: false } }, async (rig) => {
    const www = await ask(rig.ld.port, 'WWW.example', '127.0.0.1');
    assert.ok(www.flags & AA, 'local answers carry AA');
    assert.deepEqual(www.records.filter((r) => r.section === 0).map((r) => `${r.owner} ${r.type} ${r.ttl}`), ['www.example 5 300', 'web.example 1 120'], 'the CNAME is followed inside local data');
    assert.deepEqual(aRecords(await ask(rig.ld.port, 'x.y.apps.example', '127.0.0.1')), ['x.y.apps.example 192.0.2.80']);
    assert.equal((await askType(rig.ld.port, 'web.example', 15)).records.filter((r) => r.type === 15).length, 1);
    assert.equal((await ask(rig.ld.port, 'ads.example', '127.0.0.1')).rcode, 5, 'deny: REFUSED');
    assert.equal(rig.metric('records_answered_total'), 4);
    // A type the name has no record of goes on (counted), a name without local data too (not counted).
    const txt = await askType(rig.ld.port, 'web.example', 16);
    assert.equal(txt.flags & AA, 0, 'the upstream answered');
    assert.deepEqual(aRecords(await ask(rig.ld.port, 'elsewhere.example', '127.0.0.1')), [`elsewhere.example ${PUBLIC}`]);
    assert.equal(rig.metric('records_fallthrough_total'), 1);
    assert.equal(rig.up.requests.length, 2);
  });
});

test('smartLineUnmatched, a data key of records: "all" (default) shows a client in no line the labelled records, "unlabelled" does not', T, async () => {
  for (const [unmatched, want] of [[undefined, LOCAL], ['all', LOCAL], ['unlabelled', PUBLIC]] as const) {
    await withRig({ ...SPLIT, config: unmatched === undefined ? {} : { smartLineUnmatched: unmatched } }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.9')), [`${NAME} ${want}`], `smartLineUnmatched ${unmatched}`);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, INSIDE)), [`${NAME} ${LOCAL}`]);
    });
  }
});

test('records takes no options of its own: an entry with one is refused', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', { records: { ttl: 5 } }, 'forward'] } });
  assert.throws(() => loadConfig(configFile), (err: unknown) => err instanceof ConfigError && err.issues.some((i) => i.severity === 'error' && i.path.startsWith('$.pipeline[1]')));
});

test('its data keys set while records is not in the pipeline: warnings', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'forward'], smartLineUnmatched: 'unlabelled' }, records: [{ name: 'x.example', type: 'A', rdata: '192.0.2.1' }] });
  const { warnings } = loadConfig(configFile);
  assert.deepEqual(warnings.map((w) => w.path).sort(), ['$.records', '$.smartLineUnmatched']);
  assert.ok(warnings.every((w) => /the "records" stage is not in the pipeline, so it has no effect/.test(w.message)));
});

describe('reload in place', T, () => {
  test('a changed record answers on the next query, even one the cache (first) holds, answer memo on', async () => {
    await withRig({ records: [{ name: 'r.example', type: 'A', rdata: '192.0.2.1' }] }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'r.example', '127.0.0.1')), ['r.example 192.0.2.1']);
      // Another spelling: not the answer memo's repeat (its key is the octets), but the cache's.
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'R.example', '127.0.0.1')), ['r.example 192.0.2.1']);
      assert.equal(rig.metric('records_answered_total'), 1, 'the repeat was not answered by records');
      assert.equal(rig.metric('cache_hits_total'), 1);
      writeFileSync(join(rig.ld.dir, 'records.json'), JSON.stringify([{ name: 'r.example', type: 'A', rdata: '192.0.2.2' }]));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'r.example', '127.0.0.1')), ['r.example 192.0.2.2']);
      writeFileSync(join(rig.ld.dir, 'records.json'), '[]');
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'r.example', '127.0.0.1')), [`r.example ${PUBLIC}`], 'a removed record goes upstream');
    });
  });

  test('smartLineUnmatched changed by a reload applies on the next query', async () => {
    await withRig({ ...SPLIT }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.9')), [`${NAME} ${LOCAL}`]);
      const config = JSON.parse(readFileSync(rig.ld.configFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(rig.ld.configFile, JSON.stringify({ ...config, smartLineUnmatched: 'unlabelled' }));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, NAME, '127.0.0.9')), [`${NAME} ${PUBLIC}`]);
    });
  });
});

describe('labelled records need the label filter', T, () => {
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

  test('a reload that adds a label without a label filter is refused; the last good data keeps serving', async () => {
    await withRig({ records: [{ name: 'r.example', type: 'A', rdata: '192.0.2.1' }], config: { pipeline: ['decode', 'records', 'forward'] } }, async (rig) => {
      writeFileSync(join(rig.ld.dir, 'records.json'), JSON.stringify([{ name: 'r.example', type: 'A', rdata: '192.0.2.2', labels: ['internal'] }]));
      assert.equal(await rig.ld.server.reloadFromFile(), false);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'r.example', '127.0.0.1')), ['r.example 192.0.2.1']);
    });
  });
});
