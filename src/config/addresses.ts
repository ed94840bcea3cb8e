// Listen addresses and upstreams: HOST[:PORT] parsing, /etc/resolv.conf's nameservers, and the
// checks that keep linedns from listening on a wildcard or forwarding to itself.

import { readFileSync } from 'node:fs';
import { isIP, isIPv6 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { Address6 } from 'ip-address';
import { checkPresentationName } from '../lib/dns/name.js';
import { resolvConfNameservers, type ResolvConfNameserver } from './resolvconf.js';
import type { PathSegment } from './json.js';
import { Reporter, show, type LoadedFile } from './issues.js';
import type { ListenAddress, UpstreamConfig, UpstreamTls } from './types.js';

export function parseHostPort(text: string, defaultPort: number | null): ListenAddress | string {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if ((text.match(/:/g) ?? []).length > 1) {
    host = text; // a bare IPv6 address without port
  } else {
    const i = text.lastIndexOf(':');
    host = i < 0 ? text : text.slice(0, i);
    portText = i < 0 ? undefined : text.slice(i + 1);
  }
  if (host === 'localhost') host = '127.0.0.1';
  if (!isIP(host)) return `"${host}" is not an IP address`;
  if (portText === undefined) {
    if (defaultPort === null) return 'a port is required (HOST:PORT)';
    return { host: canonicalIp(host), port: defaultPort };
  }
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port > 65535) return `port "${portText}" is not 0..65535`;
  return { host: canonicalIp(host), port };
}

/** The spelling Node's sockets use for an address, so replies can be matched by string. */
function canonicalIp(host: string): string {
  return isIPv6(host) ? new Address6(host).correctForm() : host;
}

/**
 * `sources[k]` is the index in `list` that upstream k came from ("resolv.conf" gives several), and
 * `resolvAt[k]` where in /etc/resolv.conf it is written, for one that came from there.
 */
export function upstreamsFrom(
  list: readonly unknown[],
  f: LoadedFile | null,
  path: PathSegment[],
  report: Reporter,
  sources: number[] = [],
  resolvAt: Array<ResolvConfNameserver | null> = [],
  resolvConfPath = '/etc/resolv.conf',
): UpstreamConfig[] {
  const out: UpstreamConfig[] = [];
  list.forEach((item, i) => {
    if (item === 'resolv.conf') {
      for (const ns of resolvConfNameservers(resolvConfPath)) {
        out.push({ host: canonicalIp(ns.address), port: 53, protocol: 'udp' });
        sources.push(i);
        resolvAt[out.length - 1] = ns;
      }
      return;
    }
    const text = typeof item === 'string' ? item : (item as { address?: unknown } | null)?.address;
    // Not a string nor an object with a string address: the schema has reported it already.
    if (typeof text !== 'string') return;
    const obj = typeof item === 'object' && item !== null ? (item as UpstreamObject) : {};
    const protocol = obj.protocol === 'tcp' || obj.protocol === 'tls' ? obj.protocol : 'udp';
    const hp = parseHostPort(text, obj.port ?? (protocol === 'tls' ? 853 : 53));
    if (typeof hp === 'string') {
      const msg = `${withValue(text, hp)}; expected "resolv.conf", "HOST[:PORT]" or {"address": ...}`;
      const at = typeof item === 'string' ? [...path, i] : [...path, i, 'address'];
      if (f && report.has(f, at)) return;
      if (f) report.at(f, at, 'LDNS_BAD_ADDRESS', msg);
      else report.syntax('--upstream', 0, 0, 'LDNS_BAD_ADDRESS', msg);
      return;
    }
    if (hp.port === 0) {
      if (f) report.at(f, [...path, i], 'LDNS_UPSTREAM_PORT_ZERO', `${show(item)}: port 0 is not a port an upstream listens on`);
      return;
    }
    const at = [...path, i];
    const tls = f ? tlsFrom(obj, protocol, f, at, report) : undefined;
    if (tls === null) return;
    out.push({ host: hp.host, port: obj.port ?? hp.port, protocol, ...(tls === undefined ? {} : { tls }) });
    sources.push(i);
  });
  return out;
}

/** An upstream entry in object form, as the schema lets it through (each key checked again here). */
interface UpstreamObject {
  port?: number;
  protocol?: unknown;
  servername?: unknown;
  pin?: unknown;
  ca?: unknown;
}

/** "sha256/" and the base64 of 32 octets (44 characters, one "=" of padding). */
const PIN = /^sha256\/([A-Za-z0-9+/]{43}=)$/;

/**
 * The TLS settings of an upstream entry: undefined for udp/tcp (which must not carry them), null
 * when one is wrong (reported). `servername` is required unless a pin authenticates the server:
 * without either, anyone on the path could answer (RFC 8310's strict profile, not opportunistic).
 */
function tlsFrom(obj: UpstreamObject, protocol: UpstreamConfig['protocol'], f: LoadedFile, at: PathSegment[], report: Reporter): UpstreamTls | undefined | null {
  if (protocol !== 'tls') {
    const stray = (['servername', 'pin', 'ca'] as const).find((k) => obj[k] !== undefined);
    if (stray === undefined) return undefined;
    const code = stray === 'servername' ? 'LDNS_TLS_SERVERNAME' : stray === 'pin' ? 'LDNS_TLS_PIN' : 'LDNS_TLS_CA';
    report.at(f, [...at, stray], code, `"${stray}" applies to "protocol": "tls" only, and this upstream is ${protocol}; expected "protocol": "tls", or no "${stray}"`);
    return null;
  }
  let ok = true;
  const pins: string[] = [];
  if (Array.isArray(obj.pin)) {
    obj.pin.forEach((p: unknown, k) => {
      if (typeof p !== 'string') return; // the schema reported it
      const m = PIN.exec(p);
      if (m !== null && Buffer.from(m[1]!, 'base64').length === 32) pins.push(m[1]!);
      else {
        ok = false;
        report.at(f, [...at, 'pin', k], 'LDNS_TLS_PIN', `${show(p)} is not a key pin; expected "sha256/" and the base64 SHA-256 of the server's SubjectPublicKeyInfo (44 characters), as \`openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64\` prints`);
      }
    });
  }
  let servername: string | null = null;
  if (typeof obj.servername === 'string') {
    const why = obj.servername.replace(/\.$/, '') === '' ? 'is not a host name' : isIP(obj.servername) ? null : checkPresentationName(obj.servername, false);
    if (why !== null) {
      ok = false;
      report.at(f, [...at, 'servername'], 'LDNS_TLS_SERVERNAME', `${withValue(obj.servername, why)}; expected the host name the upstream's certificate carries, e.g. "dns.example"`);
    } else servername = obj.servername.replace(/\.$/, '').toLowerCase();
  } else if (obj.servername === undefined && obj.pin === undefined) {
    report.at(
      f,
      at,
      'LDNS_TLS_SERVERNAME',
      'a "tls" upstream needs "servername" (the name its certificate must carry) or "pin" (its key): without either, anyone on the path could answer for it; expected e.g. {"address": "1.1.1.1", "protocol": "tls", "servername": "one.one.one.one"}',
    );
    return null;
  }
  let ca: string | null = null;
  let caFile: string | null = null;
  if (typeof obj.ca === 'string') {
    caFile = resolve(dirname(f.file), obj.ca);
    let text: string | null = null;
    try {
      text = readFileSync(caFile, 'utf8');
    } catch (err) {
      ok = false;
      report.at(f, [...at, 'ca'], 'LDNS_TLS_CA', `${caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); expected a PEM file of CA certificates`);
    }
    if (text !== null) {
      if (/-----BEGIN CERTIFICATE-----/.test(text)) ca = text;
      else {
        ok = false;
        report.at(f, [...at, 'ca'], 'LDNS_TLS_CA', `${caFile} holds no PEM certificate; expected "-----BEGIN CERTIFICATE-----" blocks of the CAs to trust`);
      }
    }
  }
  return ok ? { servername, pins, ca, caFile } : null;
}

/**
 * `"TEXT": why`, unless `why` already starts by quoting the whole TEXT (`"dns.example" is not an
 * IP address`), which would otherwise print the value twice.
 */
export function withValue(text: string, why: string): string {
  return why.startsWith(`${show(text)} `) ? why : `${show(text)}: ${why}`;
}

export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

export const WILDCARD_WHY =
  'a UDP socket bound to a wildcard answers from whatever source address the kernel picks, and on a host with several addresses ' +
  'clients drop replies that come from another address than the one they asked ("no servers could be reached")';
