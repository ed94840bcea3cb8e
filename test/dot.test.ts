// DNS over TLS upstreams (RFC 7858) against a local TLS DNS server whose self-signed certificate
// is made here with the openssl CLI: verification by servername and CA, key pins, reuse, no UDP.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { buildQuery, resolverFor, tcpExchange } from './helpers/client.js';
import { findBinary } from './helpers/peers.js';
import { freePort } from './helpers/ports.js';
import { loadConfig } from '../src/app/config.js';
import { bounded, startLineDns, writeConfig, type Running } from './helpers/server.js';
import { numberedAnswer, StreamUpstream } from './helpers/stream-upstream.js';
import { makeCert, NO_OPENSSL, type Cert } from './helpers/certs.js';

const run = promisify(execFile);

describe('DNS over TLS upstream', { timeout: 60_000, skip: NO_OPENSSL }, () => {
  let cert: Cert;
  let other: Cert;
  let up: StreamUpstream;
  /** A UDP socket on the TLS server's port number: a "tls" upstream must never be asked here. */
  let udp: dgram.Socket;
  let datagrams = 0;

  before(async () => {
    cert = makeCert('dns.test');
    other = makeCert('dns.test');
    up = await StreamUpstream.start(numberedAnswer, { tls: { key: cert.key, cert: cert.cert } });
    udp = dgram.createSocket('udp4');
    udp.on('message', () => datagrams++);
    await new Promise<void>((r) => udp.bind(up.port, '127.0.0.1', r));
  });
  after(async () => {
    await bounded(up.close(), 'the TLS upstream');
    await new Promise<void>((r) => udp.close(() => r()));
    for (const c of [cert, other]) rmSync(c.dir, { recursive: true, force: true });
  });

  async function withLineDns(upstream: Record<string, unknown>, body: (ld: Running) => Promise<void>): Promise<void> {
    const ld = await startLineDns({
      config: { upstreams: [{ address: up.address, protocol: 'tls', ...upstream }], pipeline: ['decode', 'forward'], forward: { timeout: 1500, deadline: 3000 } },
    });
    try {
      await body(ld);
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  }

  test('servername and ca: answered, 10 queries on one TLS connection; dig gets it too', async () => {
    const before = { conns: up.connections, reqs: up.requests.length };
    await withLineDns({ servername: 'dns.test', ca: cert.caFile }, async (ld) => {
      const r = resolverFor(ld.port);
      for (let i = 1; i <= 10; i++) assert.deepEqual(await r.resolve4(`q${i}.dot.example`), [`192.0.2.${i}`]);
      const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(ld.port), 'q11.dot.example', 'A', '+short', '+tries=1', '+time=3']);
      assert.equal(stdout.trim(), '192.0.2.11');
      assert.equal(up.connections - before.conns, 1, 'the queries did not share one TLS connection');
      assert.equal(up.requests.length - before.reqs, 11);
      assert.equal(ld.server.metrics.get('upstream_stream_connections_total'), 1);
    });
    assert.equal(datagrams, 0, 'a "tls" upstream was asked over UDP');
  });

  test('a servername the certificate does not carry: verification fails, SERVFAIL, no query reaches the server', async () => {
    const reqs = up.requests.length;
    await withLineDns({ servername: 'wrong.test', ca: cert.caFile }, async (ld) => {
      await assert.rejects(resolverFor(ld.port).resolve4('q1.wrongname.example'), { code: 'ESERVFAIL' });
      assert.equal(up.requests.length, reqs, 'a query was sent over an unverified connection');
      assert.ok(ld.server.metrics.get('upstream_stream_connect_failures_total') >= 1);
    });
    assert.equal(datagrams, 0, 'a "tls" upstream fell back to UDP');
  });

  test('the right servername but not signed by a trusted CA (no "ca": system CAs): SERVFAIL', async () => {
    const reqs = up.requests.length;
    await withLineDns({ servername: 'dns.test' }, async (ld) => {
      await assert.rejects(resolverFor(ld.port).resolve4('q1.untrusted.example'), { code: 'ESERVFAIL' });
      assert.equal(up.requests.length, reqs);
    });
  });

  test('a pin alone (no servername, no ca) that matches the key: answered', async () => {
    await withLineDns({ pin: [cert.pin] }, async (ld) => {
      assert.deepEqual(await resolverFor(ld.port).resolve4('q7.pin.example'), ['192.0.2.7']);
      assert.equal(ld.server.metrics.get('upstream_tls_pin_failures_total'), 0);
    });
  });

  test('servername, ca and a pin of another key: the connection is refused by the pin, SERVFAIL, nothing sent', async () => {
    const reqs = up.requests.length;
    await withLineDns({ servername: 'dns.test', ca: cert.caFile, pin: [other.pin] }, async (ld) => {
      await assert.rejects(resolverFor(ld.port).resolve4('q1.badpin.example'), { code: 'ESERVFAIL' });
      assert.equal(up.requests.length, reqs, 'a query was sent before the pin was checked');
      assert.equal(ld.server.metrics.get('upstream_tls_pin_failures_total'), 1);
    });
  });

  test('one of two pins matching (a backup pin, as RFC 7858 advises) is enough', async () => {
    await withLineDns({ servername: 'dns.test', ca: cert.caFile, pin: [other.pin, cert.pin] }, async (ld) => {
      assert.deepEqual(await resolverFor(ld.port).resolve4('q8.pins.example'), ['192.0.2.8']);
    });
  });

  test('a ca file written relative to linedns.json is found there', async () => {
    // startLineDns writes linedns.json into a fresh directory: the CA is copied beside it.
    const ld = await startLineDns({
      config: { upstreams: [{ address: up.address, protocol: 'tls', servername: 'dns.test', ca: 'ca.pem' }], pipeline: ['decode', 'forward'] },
      extra: { 'ca.pem': cert.cert },
    });
    try {
      assert.deepEqual(await resolverFor(ld.port).resolve4('q9.relative.example'), ['192.0.2.9']);
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  });
});

test('config: a "tls" upstream without a port gets 853, and its settings reach the stage', () => {
  const { configFile } = writeConfig({ config: { upstreams: [{ address: '127.0.0.1', protocol: 'tls', servername: 'Dns.Test.', pin: [`sha256/${'A'.repeat(43)}=`] }] } });
  const { config } = loadConfig(configFile);
  assert.deepEqual(config.upstreams, [{ host: '127.0.0.1', port: 853, protocol: 'tls', tls: { servername: 'dns.test', pins: [`${'A'.repeat(43)}=`], ca: null, caFile: null } }]);
});

/**
 * Unbound as the DoT server (a real one, not ours): plain DNS on one port (for its readiness),
 * TLS on another, answering only its local zone: "." is refused, so it never asks anyone else.
 */
const UNBOUND = findBinary('unbound');
test('interop: Unbound serving DNS over TLS, verified by servername, CA and pin; dig to linedns', { skip: UNBOUND === null ? 'unbound not installed' : NO_OPENSSL, timeout: 30_000 }, async () => {
  const cert = makeCert('dot.unbound.test');
  const key = join(cert.dir, 'key.pem');
  const plain = await freePort();
  const tlsPort = await freePort();
  const conf = [
    'server:',
    `  interface: 127.0.0.1@${plain}`,
    `  interface: 127.0.0.1@${tlsPort}`,
    `  tls-port: ${tlsPort}`,
    `  tls-service-key: "${key}"`,
    `  tls-service-pem: "${cert.caFile}"`,
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${cert.dir}"`,
    '  do-daemonize: no',
    '  use-syslog: no',
    `  logfile: "${cert.dir}/unbound.log"`,
    `  pidfile: "${cert.dir}/unbound.pid"`,
    '  root-hints: ""',
    '  auto-trust-anchor-file: ""',
    '  module-config: "iterator"',
    '  access-control: 127.0.0.0/8 allow',
    '  local-zone: "." refuse',
    '  local-zone: "dot.example." static',
    '  local-data: "www.dot.example. 60 IN A 192.0.2.53"',
    '  num-threads: 1',
    '  so-reuseport: no',
    'remote-control:',
    '  control-enable: no',
  ].join('\n');
  writeFileSync(join(cert.dir, 'unbound.conf'), `${conf}\n`);
  const child = spawn(UNBOUND!, ['-d', '-c', join(cert.dir, 'unbound.conf')], { stdio: 'ignore' });
  let ld: Running | null = null;
  try {
    // Ready once it answers over plain TCP: bounded in attempts.
    let ready = false;
    for (let i = 0; i < 100 && !ready && child.exitCode === null; i++) {
      ready = (await tcpExchange(plain, [buildQuery({ name: 'www.dot.example' })], { timeoutMs: 200 })).length === 1;
      if (!ready) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(ready, `unbound did not start: ${(() => { try { return readFileSync(join(cert.dir, 'unbound.log'), 'utf8'); } catch { return ''; } })()}`);
    ld = await startLineDns({
      config: {
        upstreams: [{ address: `127.0.0.1:${tlsPort}`, protocol: 'tls', servername: 'dot.unbound.test', ca: cert.caFile, pin: [cert.pin] }],
        pipeline: ['decode', 'forward'],
      },
    });
    const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(ld.port), 'www.dot.example', 'A', '+short', '+tries=1', '+time=3']);
    assert.equal(stdout.trim(), '192.0.2.53');
    const r = resolverFor(ld.port);
    for (let i = 0; i < 5; i++) assert.deepEqual(await r.resolve4('www.dot.example'), ['192.0.2.53']);
    assert.equal(ld.server.metrics.get('upstream_stream_connections_total'), 1, 'the queries to Unbound did not share one TLS connection');
    assert.equal(ld.server.metrics.get('upstream_tls_pin_failures_total'), 0);
  } finally {
    if (ld !== null) await bounded(ld.close(), 'linedns');
    if (child.exitCode === null && child.pid !== undefined) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    rmSync(cert.dir, { recursive: true, force: true });
  }
});
