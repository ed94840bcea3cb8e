// The label filter (the smartline stage) and records: records hands on the candidate records of
// a name, smartline keeps what the client's lines may see, on either side of records; a pipeline
// with labelled records and no smartline is refused; a user stage may classify instead.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError, formatIssue, loadConfig } from '../src/config/load.js';
import { startLineDns, writeConfig, bounded, type Running, type TestFiles } from './helpers/server.js';
import { TestUpstream } from './helpers/upstream.js';
import { udpExchange } from './helpers/client.js';
import { aRecords, ipv4, mustParse, QNAME_PTR, rawQuery, replyTo, rr, type CheckedMessage, type OptFields } from './helpers/packets.js';

const NAME = 'app.split.example';
const LOCAL = '10.0.0.2';
const PUBLIC = '198.51.100.7';
const INSIDE = '127.0.0.2';
const OUTSIDE = '127.0.0.3';

interface Rig {
  up: TestUpstream;
  ld: Running;
  metric(name: string): number;
}

async function withRig(files: Omit<TestFiles, 'config'> & { config?: Record<string, unknown> }, body: (rig: Rig) => Promise<void>): Promise<void> {
  // Every A question gets PUBLIC (TTL 300) from the upstream.
  const up = await TestUpstream.start(({ raw }) => replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(PUBLIC))] }));
  try {
    const ld = await startLineDns({ ...files, config: { upstreams: [up.address], forward: { timeout: 500, deadline: 1500 }, ...files.config } });
    try {
      await body({ up, ld, metric: (n) => ld.server.metrics.get(n) });
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  } finally {
    await bounded(up.close(), 'the upstream');
  }
}

let nextId = 9000;

async function ask(port: number, name: string, from: string, opt?: OptFields): Promise<CheckedMessage> {
  const id = nextId++ & 0xffff;
  const m = mustParse(await udpExchange(port, rawQuery(name, 1, { id, opt }), { from, timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

const SPLIT = {
  smartLine: { internal: ['127.0.0.2/32', '10.1.0.0/16'], external: ['127.0.0.3/32', '10.2.0.0/16'] },
  records: [{ name: NAME, type: 'A', ttl: 60, rdata: LOCAL, labels: ['internal'] }],
};

describe('the label filter must follow records', { timeout: 30_000 }, () => {
  test('labelled records and no smartline stage: refused at load, at the pipeline key', () => {
    const { configFile } = writeConfig({ ...SPLIT, config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'records', 'forward'] } });
    let err: unknown;
    try {
      loadConfig(configFile);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, 'the pipeline was accepted');
    const text = err.issues.map(formatIssue).join('\n');
    assert.match(text, /linedns\.json:\d+:\d+: error: \$\.pipeline: records\.json has labelled records .* no "smartline" stage/);
  });

  test('without labelled records, records alone is fine', () => {
    const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', 'records', 'forward'] }, records: [{ name: 'x.example', type: 'A', rdata: '192.0.2.1' }] });
    assert.deepEqual(loadConfig(configFile).config.pipeline, ['decode', 'records', 'forward']);
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
  const example = readFileSync(new URL('../../docs/examples/geo-classifier.js', import.meta.url), 'utf8');
  // smart-line.json's CIDRs match neither client: the lines come from the example's own table.
  const files = {
    smartLine: { cn: ['192.0.2.0/24'], us: ['198.51.100.0/24'], lan: ['203.0.113.0/24'] },
    records: [
      { name: 'geo.example', type: 'A', rdata: '192.0.2.1', labels: ['cn'] },
      { name: 'geo.example', type: 'A', rdata: '192.0.2.2', labels: ['us'] },
    ],
    extra: { 'geo-classifier.js': example },
    config: { pipeline: ['decode', './geo-classifier.js', 'records', 'smartline', 'forward'], smartLineUnmatched: 'unlabelled' },
  };
  await withRig(files, async (rig) => {
    for (let round = 0; round < 2; round++) {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', INSIDE)), ['geo.example 192.0.2.1']);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', OUTSIDE)), ['geo.example 192.0.2.2']);
    }
    // In the example's "lan" line (127.0.0.0/8) but no record for it: upstream.
    assert.deepEqual(aRecords(await ask(rig.ld.port, 'geo.example', '127.0.0.9')), [`geo.example ${PUBLIC}`]);
  });
});


