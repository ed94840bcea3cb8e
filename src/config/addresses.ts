// Listen addresses and upstreams: HOST[:PORT] parsing, /etc/resolv.conf's nameservers, and the
// checks that keep linedns from listening on a wildcard or forwarding to itself.

import { isIP, isIPv6 } from 'node:net';
import { Address6 } from 'ip-address';
import { resolvConfNameservers, type ResolvConfNameserver } from './resolvconf.js';
import type { PathSegment } from './json.js';
import { Reporter, show, type LoadedFile } from './issues.js';
import type { ListenAddress, UpstreamConfig } from './types.js';

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
    const obj = typeof item === 'object' && item !== null ? (item as { port?: number; protocol?: 'udp' | 'tcp' }) : {};
    const hp = parseHostPort(text, obj.port ?? 53);
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
    out.push({ host: hp.host, port: obj.port ?? hp.port, protocol: obj.protocol ?? 'udp' });
    sources.push(i);
  });
  return out;
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
