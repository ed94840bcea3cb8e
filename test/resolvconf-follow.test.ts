// "upstreams": ["resolv.conf"] follows the file: a new nameserver written there (DHCP, a VPN,
// systemd-resolved) reloads linedns onto it, as an edit of linedns.json would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { ConfigWatcher, configFiles } from '../src/app/watch.js';
import { silentLogger } from '../src/lib/logger.js';
import { answerData, query } from './helpers/client.js';
import { writeConfig } from './helpers/server.js';
import { encodeReply } from './helpers/upstream.js';

/** A resolver on HOST:53 (resolv.conf has no port) answering every A question with `address`. */
async function resolverAt(host: string, address: string): Promise<dgram.Socket | null> {
  const sock = dgram.createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const name = q.questions?.[0]?.name ?? '';
    sock.send(encodeReply(q, { answers: [{ type: 'A', name, ttl: 60, data: address }] }), rinfo.port, rinfo.address);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(53, host, () => resolve());
    });
    return sock;
  } catch {
    sock.close();
    return null;
  }
}

test('a new nameserver in resolv.conf switches the upstream (the file is watched; never /etc/resolv.conf here)', { timeout: 30_000 }, async (t) => {
  const a = await resolverAt('127.0.53.2', '203.0.113.2');
  const b = await resolverAt('127.0.53.3', '203.0.113.3');
  if (a === null || b === null) {
    a?.close();
    b?.close();
    return t.skip('port 53 on loopback cannot be bound here (not root)');
  }
  const files = writeConfig({ config: { upstreams: ['resolv.conf'], resolvConf: 'resolv.conf', answerMemo: false }, extra: { 'resolv.conf': 'search example\nnameserver 127.0.53.2\n' } });
  const { config } = loadConfig(files.configFile);
  assert.deepEqual(config.upstreams, [{ host: '127.0.53.2', port: 53, protocol: 'udp' }]);
  assert.equal(config.resolvConf, join(files.dir, 'resolv.conf'));
  assert.ok(configFiles(config).includes(join(files.dir, 'resolv.conf')), 'watched with the config files');
  const server = await LineDnsServer.start(config, { logger: silentLogger() });
  // As cli.ts wires it: a change reloads, then the watch follows the files of the new config.
  const watcher = new ConfigWatcher(() => void server.reloadFromFile().then(() => watcher.follow(server.config)));
  watcher.follow(config);
  try {
    assert.deepEqual(answerData(await query(server.port, { name: 'n0.test' })), ['203.0.113.2']);
    writeFileSync(join(files.dir, 'resolv.conf'), 'search example\nnameserver 127.0.53.3\n');
    let got: unknown[] = [];
    // Bounded: 100 tries, 100 ms apart; a new name each time, so no cached answer hides the switch.
    for (let i = 1; i <= 100; i++) {
      got = answerData(await query(server.port, { name: `n${i}.test` }));
      if (got[0] === '203.0.113.3') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(got, ['203.0.113.3']);
    assert.deepEqual(server.config.upstreams, [{ host: '127.0.53.3', port: 53, protocol: 'udp' }]);
  } finally {
    watcher.stop();
    await server.close();
    a.close();
    b.close();
  }
});

test('upstreams not from resolv.conf: the file is neither read nor watched', () => {
  const files = writeConfig({ config: { upstreams: ['127.0.0.1:9'], resolvConf: 'missing.conf' } });
  const { config } = loadConfig(files.configFile);
  assert.equal(config.resolvConf, null);
  assert.ok(!configFiles(config).some((f) => f.endsWith('missing.conf')));
});
