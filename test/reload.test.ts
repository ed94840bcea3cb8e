// SIGHUP reloads in-process: a refused reload (even one whose loadConfig throws at once) must not
// block the reloads after it, and a SIGHUP that arrives during a reload is not lost.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { answerData, query } from './helpers/client.js';
import { withUpstream, writeConfig } from './helpers/server.js';
import { simpleHandler } from './helpers/upstream.js';
import { ConfigWatcher } from '../src/app/watch.js';

function capturingLogger(): { logger: pino.Logger; lines: Array<{ msg: string; errors?: string[] }> } {
  const lines: Array<{ msg: string; errors?: string[] }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
  return { logger, lines };
}

const recordsWith = (ip: string): string => JSON.stringify([{ name: 'r.test', type: 'A', rdata: ip }]);

test('reloads: good, good, bad (trailing comma), good, good: each good one applies and is logged', async () => {
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'] }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }] });
  const { logger, lines } = capturingLogger();
  const server = await LineDnsServer.start(loadConfig(files.configFile).config, { logger });
  try {
    const steps: Array<{ text: string; ok: boolean; ip: string }> = [
      { text: recordsWith('192.0.2.2'), ok: true, ip: '192.0.2.2' },
      { text: recordsWith('192.0.2.3'), ok: true, ip: '192.0.2.3' },
      { text: '[{ "name": "r.test", "type": "A", "rdata": "192.0.2.4" },]', ok: false, ip: '192.0.2.3' },
      { text: recordsWith('192.0.2.5'), ok: true, ip: '192.0.2.5' },
      { text: recordsWith('192.0.2.6'), ok: true, ip: '192.0.2.6' },
    ];
    for (const [i, step] of steps.entries()) {
      writeFileSync(join(files.dir, 'records.json'), step.text);
      const before = lines.length;
      assert.equal(await server.reloadFromFile(), step.ok, `step ${i}`);
      // Other lines may come with it (the cache says what it dropped): one of the two answers must.
      const logged = lines.slice(before).map((l) => l.msg).filter((m) => m === 'configuration reloaded' || m.startsWith('reload failed'));
      assert.deepEqual(logged, [step.ok ? 'configuration reloaded' : 'reload failed; keeping the last good configuration'], `step ${i}`);
      assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), [step.ip], `step ${i}`);
    }
    const failure = lines.find((l) => l.errors)!;
    assert.match(failure.errors![0]!, /records\.json:1:\d+: error: \$: /);
  } finally {
    await server.close();
  }
});

test('SIGHUPs during a reload are not lost: they fold into one more reload after it', async () => {
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'] }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }] });
  const { logger, lines } = capturingLogger();
  const server = await LineDnsServer.start(loadConfig(files.configFile).config, { logger });
  try {
    writeFileSync(join(files.dir, 'records.json'), recordsWith('192.0.2.2'));
    const first = server.reloadFromFile();
    const second = server.reloadFromFile();
    const third = server.reloadFromFile();
    assert.notEqual(first, second);
    assert.equal(second, third);
    assert.equal(await first, true);
    assert.equal(await second, true);
    assert.equal(lines.filter((l) => l.msg === 'configuration reloaded').length, 2);
    assert.deepEqual(answerData(await query(server.port, { name: 'r.test' })), ['192.0.2.2']);
  } finally {
    await server.close();
  }
});

test('a file edit seen by the watch reloads, and the cache drops only the edited name (counted upstream queries)', { timeout: 30_000 }, async () => {
  await withUpstream(simpleHandler('203.0.113.9'), { config: { answerMemo: false }, records: [{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }] }, async (ld, up) => {
    const watcher = new ConfigWatcher(() => void ld.server.reloadFromFile());
    watcher.follow(ld.server.config);
    try {
      for (const n of ['a.example', 'b.example', 'soon-local.example']) assert.deepEqual(answerData(await query(ld.port, { name: n })), ['203.0.113.9']);
      assert.equal(up.requests.length, 3);
      writeFileSync(join(ld.dir, 'records.json'), JSON.stringify([{ name: 'r.test', type: 'A', rdata: '192.0.2.1' }, { name: 'soon-local.example', type: 'A', rdata: '192.0.2.5' }]));
      let got: unknown[] = [];
      // Bounded: 100 tries, 50 ms apart (the watch settles for 200 ms first).
      for (let i = 0; i < 100 && got[0] !== '192.0.2.5'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        got = answerData(await query(ld.port, { name: 'soon-local.example' }));
      }
      assert.deepEqual(got, ['192.0.2.5'], 'the upstream answer cached for the name that became local is gone');
      for (const n of ['a.example', 'b.example']) assert.deepEqual(answerData(await query(ld.port, { name: n })), ['203.0.113.9']);
      assert.equal(up.requests.length, 3, 'the other names were answered from the cache');
    } finally {
      watcher.stop();
    }
  });
});
