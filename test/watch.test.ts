// Reload on change: an editor's rename-replace, a Kubernetes ConfigMap's `..data` symlink swap,
// a broken edit (the last good config keeps serving), and `"watch": false`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { udpExchange } from './helpers/client.js';
import { mustParse, rawQuery } from './helpers/packets.js';
import { writeConfig } from './helpers/server.js';
import { portOf, serve, until, type Served } from './helpers/serve.js';

const records = (address: string): string => JSON.stringify([{ name: 'w.test', type: 'A', rdata: address }]);

async function answer(port: number): Promise<string> {
  const reply = mustParse(await udpExchange(port, rawQuery('w.test', 1, { id: 7 })));
  const a = reply.records.find((r) => r.type === 1);
  return a ? Array.from(a.rdata).join('.') : `rcode ${reply.rcode}`;
}

async function stop(s: Served): Promise<void> {
  s.child.kill('SIGTERM');
  await s.exit;
}

test('an editor saving records.json by rename-replace: the next answers are the new ones; a broken save keeps the last good', async () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], records: 'records.json' }, extra: { 'records.json': records('192.0.2.1') } });
  const s = await serve(['--config', configFile]);
  try {
    const port = portOf(s);
    assert.equal(await answer(port), '192.0.2.1');
    writeFileSync(join(dir, '.records.json.swp'), records('192.0.2.2'));
    renameSync(join(dir, '.records.json.swp'), join(dir, 'records.json'));
    await until(async () => (await answer(port)) === '192.0.2.2');
    writeFileSync(join(dir, 'records.json'), '[{"name": "w.test", "type": "A", "rdata": "not-an-ip"}]');
    await until(async () => s.lines.some((l) => l.includes('reload failed')));
    assert.equal(await answer(port), '192.0.2.2', 'the last good config still serves');
    writeFileSync(join(dir, 'records.json'), records('192.0.2.3'));
    await until(async () => (await answer(port)) === '192.0.2.3');
  } finally {
    await stop(s);
  }
});

test('a ConfigMap volume: files are symlinks through ..data, which the kubelet swaps atomically', async () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], records: 'map/records.json' } });
  const map = join(dir, 'map');
  mkdirSync(join(map, '..v1'), { recursive: true });
  writeFileSync(join(map, '..v1', 'records.json'), records('192.0.2.10'));
  symlinkSync('..v1', join(map, '..data'));
  symlinkSync('..data/records.json', join(map, 'records.json'));
  const s = await serve(['--config', configFile]);
  try {
    const port = portOf(s);
    assert.equal(await answer(port), '192.0.2.10');
    // The kubelet's atomic writer: a new timestamped directory, a new ..data link renamed over the old.
    mkdirSync(join(map, '..v2'));
    writeFileSync(join(map, '..v2', 'records.json'), records('192.0.2.11'));
    symlinkSync('..v2', join(map, '..data_tmp'));
    renameSync(join(map, '..data_tmp'), join(map, '..data'));
    await until(async () => (await answer(port)) === '192.0.2.11');
  } finally {
    await stop(s);
  }
});

test('"watch": false: a change waits for SIGHUP', async () => {
  const { dir, configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], records: 'records.json', watch: false }, extra: { 'records.json': records('192.0.2.20') } });
  const s = await serve(['--config', configFile]);
  try {
    const port = portOf(s);
    writeFileSync(join(dir, 'records.json'), records('192.0.2.21'));
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await answer(port), '192.0.2.20', 'not reloaded by the change');
    s.child.kill('SIGHUP');
    await until(async () => (await answer(port)) === '192.0.2.21');
  } finally {
    await stop(s);
  }
});
