// Self-signed certificates made with the openssl CLI for the TLS tests (DoT upstreams, https URL
// sources): each is its own CA, with the subjectAltName the test needs and its key's pin.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from './peers.js';

/** Tests that need a certificate skip with this reason when the openssl CLI is missing. */
export const NO_OPENSSL: string | false = findBinary('openssl') === null ? 'openssl not installed (Debian: apt-get install openssl)' : false;

export interface Cert {
  dir: string;
  key: string;
  cert: string;
  /** Path of cert.pem: self-signed, so it is its own CA. */
  caFile: string;
  /** "sha256/BASE64" of its SubjectPublicKeyInfo, as openssl computes it. */
  pin: string;
}

/** A P-256 certificate for `name`, valid two days; `san` is its subjectAltName (default DNS:name). */
export function makeCert(name: string, san = `DNS:${name}`): Cert {
  const dir = mkdtempSync(join(tmpdir(), 'linedns-cert-'));
  const keyFile = join(dir, 'key.pem');
  const caFile = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', caFile, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`,
  ], { stdio: 'ignore' });
  const spki = execFileSync('openssl', ['pkey', '-in', keyFile, '-pubout', '-outform', 'der']);
  const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: spki });
  return { dir, key: readFileSync(keyFile, 'utf8'), cert: readFileSync(caFile, 'utf8'), caFile, pin: `sha256/${digest.toString('base64')}` };
}
