// The checks of records.json a schema cannot make: names, addresses, TXT lengths, SOA owners,
// CNAME beside other data, and labels that name no line of smart-line.json.

import { isIPv4, isIPv6 } from 'node:net';
import { checkPresentationName, normalizeName } from '../lib/dns/name.js';
import type { PathSegment } from './json.js';
import { Reporter, show, type LoadedFile } from './issues.js';
import type { RecordEntry } from './types.js';

export function checkRecords(f: LoadedFile, lines: Set<string> | null, report: Reporter): RecordEntry[] {
  const entries = f.value as RecordEntry[];
  const nameErr = (i: number, field: PathSegment[], value: unknown, wildcard = false): void => {
    if (typeof value !== 'string') return;
    const why = checkPresentationName(value, wildcard);
    if (why) report.at(f, [i, ...field], 'LDNS_RECORD_NAME', `${show(value)} ${why}; expected a domain name`);
  };
  const cnameOwners = new Map<string, number>();
  const otherOwners = new Map<string, number>();
  entries.forEach((e, i) => {
    if (typeof e !== 'object' || e === null) return;
    nameErr(i, ['name'], e.name, true);
    if (e.action) {
      if (e.rdata !== undefined) report.at(f, [i, 'rdata'], 'LDNS_RECORD_RDATA_IGNORED', `rdata is ignored when "action" is "${e.action}"`);
      return;
    }
    const r = e.rdata as Record<string, unknown> | string | string[];
    switch (e.type) {
      case 'A':
        if (typeof r === 'string' && !isIPv4(r)) report.at(f, [i, 'rdata'], 'LDNS_RECORD_ADDRESS', `${show(r)} is not an IPv4 address; expected e.g. "192.0.2.10"`);
        break;
      case 'AAAA':
        if (typeof r === 'string' && !isIPv6(r)) report.at(f, [i, 'rdata'], 'LDNS_RECORD_ADDRESS', `${show(r)} is not an IPv6 address; expected e.g. "2001:db8::10"`);
        break;
      case 'CNAME':
      case 'NS':
      case 'PTR':
        nameErr(i, ['rdata'], r);
        break;
      case 'MX':
        nameErr(i, ['rdata', 'exchange'], (r as Record<string, unknown>)?.exchange);
        break;
      case 'SRV':
        nameErr(i, ['rdata', 'target'], (r as Record<string, unknown>)?.target);
        break;
      case 'SOA':
        nameErr(i, ['rdata', 'mname'], (r as Record<string, unknown>)?.mname);
        nameErr(i, ['rdata', 'rname'], (r as Record<string, unknown>)?.rname);
        if (typeof e.name === 'string' && e.name.startsWith('*')) report.at(f, [i, 'name'], 'LDNS_RECORD_SOA_WILDCARD', 'an SOA cannot have a wildcard owner');
        break;
      case 'TXT': {
        const strings = Array.isArray(r) ? r : [r];
        strings.forEach((s, j) => {
          if (typeof s === 'string' && Buffer.byteLength(s) > 255) {
            report.at(f, Array.isArray(r) ? [i, 'rdata', j] : [i, 'rdata'], 'LDNS_RECORD_TXT_LENGTH', `a TXT string of ${Buffer.byteLength(s)} octets; expected at most 255 (split it into an array of strings)`);
          }
        });
        break;
      }
      default:
        break;
    }
    if (typeof e.name === 'string' && !(e.labels && e.labels.length > 0)) {
      const owner = normalizeName(e.name);
      (e.type === 'CNAME' ? cnameOwners : otherOwners).set(owner, i);
    }
    if (lines !== null && Array.isArray(e.labels)) {
      e.labels.forEach((l, j) => {
        if (!lines.has(l)) report.at(f, [i, 'labels', j], 'LDNS_RECORD_UNKNOWN_LABEL', `label "${l}" is not a line in smart-line.json: only clients in no line will see this record`);
      });
    }
  });
  for (const [owner, i] of cnameOwners) {
    if (otherOwners.has(owner)) report.at(f, [i], 'LDNS_RECORD_CNAME_CONFLICT', `"${owner}" has a CNAME and other records visible to the same clients (RFC 1034 3.6.2 forbids it)`);
  }
  return entries;
}
