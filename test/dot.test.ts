// DNS over TLS upstreams (RFC 7858) against a local TLS DNS server whose self-signed certificate
// is made here with the openssl CLI: verification by servername and CA, key pins, reuse, no UDP.

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { resolverFor } from './helpers/client.js';
import { loadConfig } from '../src/app/config.js';
import { bounded, startLineDns, writeConfig, type Running } from './helpers/server.js';
import { numberedAnswer, StreamUpstream } from './helpers/stream-upstream.js';

const run = promisify(execFile);

interface Cert {
  dir: string;
  key: string;
  cert: string;
  /** Path of cert.pem: self-signed, so it is its own CA. */
  caFile: string;
  /** "sha256/BASE64" of its SubjectPublicKeyInfo, as openssl computes it. */
  pin: string;
}

function makeCert(name: string): Cert {
  const dir = mkdtempSync(join(tmpdir(), 'linedns-dot-'));
  const keyFile = join(dir, 'key.pem');
  const caFile = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', caFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`,
  ], { stdio: 'ignore' });
  const spki = execFileSync('openssl', ['pkey', '-in', keyFile, '-pubout', '-outform', 'der']);
  const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: spki });
  return { dir, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(caFile, 'utf8'), caFile, pin: `sha256/${digest.toString('base64')}` };
}

describe('DNS over TLS upstream', { timeout: 60_000 }, () => {
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
