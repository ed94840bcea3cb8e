// Reads a golden queries file (schemas/tests.schema.json): schema first, then what a schema cannot
// check (client addresses, types, client subnets, mock keys and answers), each at FILE:LINE:COL.

import { isIP } from 'node:net';
import { typeFromName, typeName } from '../lib/dns/constants.js';
import { parseZoneText, type ZoneRecord } from '../lib/dns/zonefile.js';
import { parseCidr } from '../lib/net/address.js';
import type { PathSegment } from './json.js';
import type { LoadedFile, Reporter } from './issues.js';
import { fileSchema, fileValidator } from './schemas.js';
import type { GoldenFile, GoldenMock, GoldenTest } from './types.js';
import { readJson, validateSchema } from './validate.js';

/** "App.Example.com." -> "app.example.com", the form ParsedQuery gives a name in. */
export function canonicalName(name: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n === '' ? '.' : n;
}

/** A mock key as the runner looks it up: "NAME TYPE" -> "name TYPE", or an error message. */
export function mockKey(key: string): string | { error: string } {
  const parts = key.trim().split(/\s+/);
  if (parts.length !== 2) return { error: `mock key "${key}" is not "NAME TYPE"; expected e.g. "app.example.com A"` };
  const type = typeFromName(parts[1]!);
  if (type === undefined) return { error: `mock key "${key}": unknown record type "${parts[1]}"; expected e.g. A, AAAA, MX, TXT` };
  return `${canonicalName(parts[0]!)} ${typeName(type)}`;
}

/**
 * The records of a mock answer, parsed as zone file lines (`NAME TTL IN TYPE RDATA`), so RDATA
 * is written as `explain` prints it; or the parser's message for the first that does not parse.
 */
export function mockRecords(key: string, m: GoldenMock): ZoneRecord[] | { index: number; error: string } {
  const [name, type] = key.split(' ') as [string, string];
  const owner = name === '.' ? '.' : `${name}.`;
  const out: ZoneRecord[] = [];
  for (let i = 0; i < m.answers.length; i++) {
    // No $INCLUDE: a mock answer is data, never a path to read.
    const r = parseZoneText(`${owner} ${m.ttl} IN ${type} ${m.answers[i]}\n`, 'mock', { maxIncludeDepth: 0, origin: '.' });
    if (r.errors.length > 0 || r.records.length !== 1) return { index: i, error: r.errors[0]?.message ?? 'not one record' };
    out.push(r.records[0]!);
  }
  return out;
}

/**
 * Reads and checks the tests file at `path`; null when it has errors (all reported). `namedAt`
 * is where linedns.json names it, for a file that cannot be read.
 */
export function loadGolden(path: string, report: Reporter, namedAt?: { f: LoadedFile; path: readonly PathSegment[] }): GoldenFile | null {
  const f = readJson(path, report, namedAt);
  if (f === null) return null;
  const before = report.issues.length;
  const valid = validateSchema(f, { validate: fileValidator('tests'), schema: () => fileSchema('tests') }, report);
  if (!valid) return null;
  const raw = f.value as { mock?: Record<string, { rcode?: string; answers?: string[]; ttl?: number }>; tests: GoldenTest[] };
  const mock: Record<string, GoldenMock> = {};
  for (const [key, m] of Object.entries(raw.mock ?? {})) {
    const k = mockKey(key);
    if (typeof k !== 'string') {
      report.at(f, ['mock', key], 'LDNS_GOLDEN_VALUE', k.error, true);
      continue;
    }
    const entry: GoldenMock = { rcode: m.rcode ?? 'NOERROR', answers: m.answers ?? [], ttl: m.ttl ?? 300 };
    const recs = mockRecords(k, entry);
    if (!Array.isArray(recs)) report.at(f, ['mock', key, 'answers', recs.index], 'LDNS_GOLDEN_VALUE', `${JSON.stringify(entry.answers[recs.index])} is not ${k.split(' ')[1]} data: ${recs.error}`);
    mock[k] = entry;
  }
  raw.tests.forEach((t, i) => {
    if (isIP(t.client) === 0) report.at(f, ['tests', i, 'client'], 'LDNS_GOLDEN_VALUE', `"${t.client}" is not an IP address; expected e.g. 10.1.2.3 or 2001:db8::1`);
    if (t.type !== undefined && typeFromName(t.type) === undefined) report.at(f, ['tests', i, 'type'], 'LDNS_GOLDEN_VALUE', `unknown record type "${t.type}"; expected e.g. A, AAAA, MX, TXT`);
    if (t.ecs !== undefined && typeof parseCidr(t.ecs) === 'string') report.at(f, ['tests', i, 'ecs'], 'LDNS_GOLDEN_VALUE', `"${t.ecs}" is not a CIDR; expected e.g. 10.1.0.0/24`);
  });
  if (report.issues.slice(before).some((i) => i.severity === 'error')) return null;
  return { file: path, mock, tests: raw.tests.map((t) => ({ ...t, type: typeName(typeFromName(t.type ?? 'A')!) })) };
}
