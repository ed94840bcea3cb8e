// Loads linedns.json, records.json and smart-line.json: schema checks (ajv), semantic checks,
// and every problem reported as file:line:col, JSON path, offending value and what was expected.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { Address6 } from 'ip-address';
import { checkPresentationName, normalizeName } from '../lib/dns/name.js';
import { parseCidr } from '../lib/net/address.js';
import { resolvConfNameservers, type ResolvConfNameserver } from './resolvconf.js';
import { JsonDocument, formatPath, pointerToPath, type PathSegment } from './json.js';
import { schemaAt, schemaFor, type ErrorObject, type SchemaName } from './schemas.js';
import type { Logger, LogLevel } from '../lib/logger.js';
import type { ListenAddress, RecordEntry, RuntimeConfig, UpstreamConfig } from './types.js';

export const BUILTIN_STAGES = ['decode', 'acl', 'ratelimit', 'smartline', 'records', 'cache', 'forward'] as const;
/** The users' shape: the line-aware cache answers repeats first, then local data, then its filter. */
export const DEFAULT_PIPELINE: readonly string[] = ['decode', 'acl', 'ratelimit', 'cache', 'records', 'smartline', 'forward'];
export const DEFAULT_LISTEN = ['127.0.0.1:5300', '[::1]:5300'];
/** Source ports per upstream: 1024 x 65,536 IDs = 2^26 tries for an off-path forger (docs/security.md). */
export const DEFAULT_SOURCE_PORTS = 1024;

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** JSON path, `$` for the whole document. */
  path: string;
  message: string;
  severity: 'error' | 'warning';
}

/** What to log of a configuration that failed to load: each issue as FILE:LINE:COL, or the error. */
export function failureLines(err: unknown): string[] {
  return err instanceof ConfigError ? err.issues.map(formatIssue) : [String(err)];
}

/**
 * Loads `file` again for a reload (SIGHUP, in a single process or a --workers primary), logging
 * its warnings; when it is invalid, logs every error and returns null: the running one stays.
 */
export function reloadConfig(file: string | null, overrides: ConfigOverrides, logger: Logger): RuntimeConfig | null {
  try {
    const { config, warnings } = loadConfig(file, overrides);
    for (const w of warnings) logger.warn(formatIssue(w));
    return config;
  } catch (err) {
    logger.error({ errors: failureLines(err) }, 'reload failed; keeping the last good configuration');
    return null;
  }
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.severity}: ${i.path}: ${i.message}`;
}

/** Orders issues by file (in the order files were read), then line and column. */
function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  const files = [...new Set(issues.map((i) => i.file))];
  return [...issues].sort((a, b) => files.indexOf(a.file) - files.indexOf(b.file) || a.line - b.line || a.column - b.column);
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n'));
    this.issues = sortIssues(issues);
    this.name = 'ConfigError';
  }
}

/** Command-line flags; each replaces the config file's value. */
export interface ConfigOverrides {
  listen?: string[];
  upstreams?: string[];
  records?: string;
  smartLine?: string;
  workers?: number;
  logLevel?: LogLevel;
}

interface LoadedFile {
  file: string;
  doc: JsonDocument | null;
  value: unknown;
}

class Reporter {
  readonly issues: ConfigIssue[] = [];

  syntax(file: string, line: number, column: number, message: string): void {
    this.issues.push({ file, line, column, path: '$', message, severity: 'error' });
  }

  at(f: LoadedFile, path: readonly PathSegment[], message: string, severity: 'error' | 'warning' = 'error', key = false): void {
    const pos = f.doc ? f.doc.locate(path, key) : { line: 0, column: 0 };
    this.issues.push({ file: f.file, line: pos.line, column: pos.column, path: formatPath(path), message, severity });
  }

  /** True when an error is already reported at this path, so a semantic check need not repeat it. */
  has(f: LoadedFile, path: readonly PathSegment[]): boolean {
    const p = formatPath(path);
    return this.issues.some((i) => i.file === f.file && i.path === p && i.severity === 'error');
  }

  get failed(): boolean {
    return this.issues.some((i) => i.severity === 'error');
  }
}

function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let cur = root;
  for (const seg of path) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[seg] : undefined;
  return cur;
}

/** Closest known word, for "did you mean" on misspelt keys. */
function suggest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** Words an ajv error for a person; null for errors that only echo a more precise one. */
function describe(e: ErrorObject, value: unknown, schema: SchemaName): { message: string; key: boolean; extra?: PathSegment } | null {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'if':
    case 'allOf':
      return null;
    case 'type':
      return { message: `${show(value)} is not ${article(String(p.type))}`, key: false };
    case 'required':
      return { message: `missing required property "${String(p.missingProperty)}"`, key: false };
    case 'additionalProperties': {
      const name = String(p.additionalProperty);
      const props = Object.keys((schemaAt(schema, e.schemaPath)?.properties as object | undefined) ?? {});
      const hint = suggest(name, props);
      return { message: `unknown property "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; expected one of ${props.map((k) => `"${k}"`).join(', ')}`, key: true, extra: name };
    }
    case 'enum':
      return { message: `${show(value)} is not one of ${(p.allowedValues as unknown[]).map(show).join(', ')}`, key: false };
    case 'const':
      return { message: `${show(value)} is not ${show(p.allowedValue)}`, key: false };
    case 'pattern':
      return { message: `${show(value)} does not match the expected form ${patternHint(e.instancePath)}`, key: false };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { message: `${show(value)} is out of range (expected ${String(p.comparison)} ${String(p.limit)})`, key: false };
    case 'minItems':
      return { message: `expected at least ${String(p.limit)} item(s)`, key: false };
    case 'minLength':
      return { message: `expected a non-empty string`, key: false };
    case 'oneOf':
    case 'anyOf':
      return { message: `${show(value)} matches none of the accepted forms`, key: false };
    default:
      return { message: `${show(value)}: ${e.message ?? e.keyword}`, key: false };
  }
}

function article(type: string): string {
  const words = type.split(',').map((t) => (t === 'integer' ? 'an integer' : t === 'array' ? 'an array' : t === 'object' ? 'an object' : `a ${t}`));
  return words.join(' or ');
}

function patternHint(pointer: string): string {
  if (pointer.startsWith('/listen')) return 'HOST:PORT, with IPv6 written [ADDR]:PORT (e.g. "127.0.0.1:5300", "[::1]:5300")';
  if (pointer.endsWith('/tag')) return 'of 1-15 letters and digits (e.g. "issue")';
  return '';
}

function readJson(path: string, report: Reporter): LoadedFile | null {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    report.syntax(path, 0, 0, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    return null;
  }
  const doc = JsonDocument.fromBytes(bytes);
  if (Array.isArray(doc)) {
    for (const p of doc) report.syntax(path, p.line, p.column, `invalid JSON: ${p.message}`);
    return null;
  }
  const f = { file: path, doc, value: doc.value };
  for (const d of doc.duplicates) {
    report.issues.push({
      file: path,
      line: d.line,
      column: d.column,
      path: formatPath(d.path),
      message: `duplicate key "${String(d.path[d.path.length - 1])}" (first at ${d.first.line}:${d.first.column}); expected each key once per object, as only the last one would count`,
      severity: 'error',
    });
  }
  return f;
}

function validateSchema(f: LoadedFile, schema: SchemaName, report: Reporter): boolean {
  const validate = schemaFor(schema);
  if (validate(f.value)) return true;
  const errors = pruneAlternatives(validate.errors ?? []);
  // When a more specific error sits under the path of a oneOf/anyOf, report only that one.
  const paths = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'anyOf').map((e) => e.instancePath);
  const seen = new Set<string>();
  for (const e of errors) {
    if ((e.keyword === 'oneOf' || e.keyword === 'anyOf') && paths.some((p) => p.startsWith(e.instancePath + '/'))) continue;
    const path = pointerToPath(e.instancePath, f.value);
    const d = describe(e, valueAt(f.value, path), schema);
    if (d === null) continue;
    const full = d.extra !== undefined ? [...path, d.extra] : path;
    const id = `${formatPath(full)}|${d.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    report.at(f, full, d.message, 'error', d.key);
  }
  return false;
}

/**
 * A value that fails a oneOf/anyOf gets an error from every branch, most of them beside the
 * point ("{...} is not a string" for an object missing a key). Keeps the errors of the branches
 * whose type the value has; when it has none of their types, one "is not X or Y" instead.
 */
function pruneAlternatives(errors: readonly ErrorObject[]): ErrorObject[] {
  const drop = new Set<ErrorObject>();
  const add: ErrorObject[] = [];
  for (const alt of errors) {
    if ((alt.keyword !== 'oneOf' && alt.keyword !== 'anyOf') || (alt.params as { passingSchemas?: unknown }).passingSchemas) continue;
    const prefix = `${alt.schemaPath}/`;
    const branchOf = (e: ErrorObject): string | null =>
      e !== alt && e.schemaPath.startsWith(prefix) && (e.instancePath === alt.instancePath || e.instancePath.startsWith(`${alt.instancePath}/`)) ? e.schemaPath.slice(prefix.length).split('/')[0]! : null;
    const branches = new Map<string, ErrorObject[]>();
    for (const e of errors) {
      const b = branchOf(e);
      if (b !== null) branches.set(b, [...(branches.get(b) ?? []), e]);
    }
    const wrongType = (b: string): ErrorObject | undefined =>
      branches.get(b)!.find((e) => e.keyword === 'type' && e.instancePath === alt.instancePath && e.schemaPath === `${prefix}${b}/type`);
    const fitting = [...branches.keys()].filter((b) => wrongType(b) === undefined);
    if (branches.size === 0) continue;
    for (const [b, list] of branches) if (!fitting.includes(b)) list.forEach((e) => drop.add(e));
    drop.add(alt);
    if (fitting.length === 0) {
      const types = [...branches.keys()].map((b) => String((wrongType(b)!.params as { type: unknown }).type));
      add.push({ ...alt, keyword: 'type', params: { type: types.join(',') } });
    }
  }
  return [...errors.filter((e) => !drop.has(e)), ...add];
}

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
function upstreamsFrom(
  list: readonly unknown[],
  f: LoadedFile | null,
  path: PathSegment[],
  report: Reporter,
  sources: number[] = [],
  resolvAt: Array<ResolvConfNameserver | null> = [],
): UpstreamConfig[] {
  const out: UpstreamConfig[] = [];
  list.forEach((item, i) => {
    if (item === 'resolv.conf') {
      for (const ns of resolvConfNameservers()) {
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
      const msg = `${show(text)}: ${hp}; expected "resolv.conf", "HOST[:PORT]" or {"address": ...}`;
      const at = typeof item === 'string' ? [...path, i] : [...path, i, 'address'];
      if (f && report.has(f, at)) return;
      if (f) report.at(f, at, msg);
      else report.syntax('--upstream', 0, 0, msg);
      return;
    }
    if (hp.port === 0) {
      if (f) report.at(f, [...path, i], `${show(item)}: port 0 is not a port an upstream listens on`);
      return;
    }
    out.push({ host: hp.host, port: obj.port ?? hp.port, protocol: obj.protocol ?? 'udp' });
    sources.push(i);
  });
  return out;
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

const WILDCARD_WHY =
  'a UDP socket bound to a wildcard answers from whatever source address the kernel picks, and on a host with several addresses ' +
  'clients drop replies that come from another address than the one they asked ("no servers could be reached")';

/** Top-level keys read only by one built-in stage: set without that stage, they do nothing. */
const STAGE_OF_KEY: Readonly<Record<string, string>> = {
  allow: 'acl',
  rateLimit: 'ratelimit',
  smartLine: 'smartline',
  trustEcsFrom: 'smartline',
  records: 'records',
  smartLineUnmatched: 'records',
  cache: 'cache',
  forward: 'forward',
  upstreams: 'forward',
};

function checkCidrs(f: LoadedFile, list: unknown, path: PathSegment[], report: Reporter): void {
  if (!Array.isArray(list)) return;
  list.forEach((c, i) => {
    if (typeof c !== 'string') return;
    const parsed = parseCidr(c);
    if (typeof parsed === 'string') report.at(f, [...path, i], `${show(c)}: ${parsed}; expected a CIDR such as "10.0.0.0/8" or "2001:db8::/32"`);
  });
}

function checkRecords(f: LoadedFile, lines: Set<string> | null, report: Reporter): RecordEntry[] {
  const entries = f.value as RecordEntry[];
  const nameErr = (i: number, field: PathSegment[], value: unknown, wildcard = false): void => {
    if (typeof value !== 'string') return;
    const why = checkPresentationName(value, wildcard);
    if (why) report.at(f, [i, ...field], `${show(value)} ${why}; expected a domain name`);
  };
  const cnameOwners = new Map<string, number>();
  const otherOwners = new Map<string, number>();
  entries.forEach((e, i) => {
    if (typeof e !== 'object' || e === null) return;
    nameErr(i, ['name'], e.name, true);
    if (e.action) {
      if (e.rdata !== undefined) report.at(f, [i, 'rdata'], `rdata is ignored when "action" is "${e.action}"`, 'warning');
      return;
    }
    const r = e.rdata as Record<string, unknown> | string | string[];
    switch (e.type) {
      case 'A':
        if (typeof r === 'string' && !isIPv4(r)) report.at(f, [i, 'rdata'], `${show(r)} is not an IPv4 address; expected e.g. "192.0.2.10"`);
        break;
      case 'AAAA':
        if (typeof r === 'string' && !isIPv6(r)) report.at(f, [i, 'rdata'], `${show(r)} is not an IPv6 address; expected e.g. "2001:db8::10"`);
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
        if (typeof e.name === 'string' && e.name.startsWith('*')) report.at(f, [i, 'name'], 'an SOA cannot have a wildcard owner');
        break;
      case 'TXT': {
        const strings = Array.isArray(r) ? r : [r];
        strings.forEach((s, j) => {
          if (typeof s === 'string' && Buffer.byteLength(s) > 255) {
            report.at(f, Array.isArray(r) ? [i, 'rdata', j] : [i, 'rdata'], `a TXT string of ${Buffer.byteLength(s)} octets; expected at most 255 (split it into an array of strings)`);
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
        if (!lines.has(l)) report.at(f, [i, 'labels', j], `label "${l}" is not a line in smart-line.json: only clients in no line will see this record`, 'warning');
      });
    }
  });
  for (const [owner, i] of cnameOwners) {
    if (otherOwners.has(owner)) report.at(f, [i], `"${owner}" has a CNAME and other records visible to the same clients (RFC 1034 3.6.2 forbids it)`);
  }
  return entries;
}

function relativeTo(base: string | null, p: string): string {
  return resolve(base ? dirname(base) : process.cwd(), p);
}

/**
 * Loads and validates everything. Throws ConfigError listing every error (and warning) found;
 * otherwise returns the config and the warnings.
 */
export function loadConfig(file: string | null, overrides: ConfigOverrides = {}): { config: RuntimeConfig; warnings: ConfigIssue[] } {
  const report = new Reporter();
  const path = file ? resolve(file) : null;
  let raw: Record<string, unknown> = {};
  let main: LoadedFile | null = null;
  if (path) {
    main = readJson(path, report);
    if (main) validateSchema(main, 'linedns', report);
    // Semantic checks still run on a file with schema errors, so one run lists every error.
    if (main && typeof main.value === 'object' && main.value !== null && !Array.isArray(main.value)) raw = main.value as Record<string, unknown>;
  }
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const obj = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
  const int = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);

  // listen
  const listenTexts = overrides.listen ?? (Array.isArray(raw.listen) ? (raw.listen as unknown[]).filter((x): x is string => typeof x === 'string') : DEFAULT_LISTEN);
  const listen: ListenAddress[] = [];
  listenTexts.forEach((t, i) => {
    const hp = parseHostPort(t, null);
    if (typeof hp !== 'string' && isWildcard(hp.host)) {
      const msg = `${show(t)} is a wildcard address: ${WILDCARD_WHY}; expected each local address on its own line instead, e.g. ["192.0.2.10:53", "127.0.0.1:53"]`;
      if (overrides.listen) report.syntax('--listen', 0, 0, msg);
      else if (main) report.at(main, ['listen', i], msg);
    } else if (typeof hp !== 'string') listen.push(hp);
    else if (overrides.listen) report.syntax('--listen', 0, 0, `${show(t)}: ${hp}`);
    // Checked even when the schema failed elsewhere, so one run lists every error of the file.
    else if (main && !report.has(main, ['listen', i])) report.at(main, ['listen', i], `${show(t)}: ${hp}; expected HOST:PORT, with IPv6 written [ADDR]:PORT`);
  });

  // upstreams
  let upstreams: UpstreamConfig[];
  const sources: number[] = [];
  const resolvAt: Array<ResolvConfNameserver | null> = [];
  if (overrides.upstreams) upstreams = upstreamsFrom(overrides.upstreams, null, [], report, sources, resolvAt);
  else upstreams = upstreamsFrom(Array.isArray(raw.upstreams) ? (raw.upstreams as unknown[]) : ['resolv.conf'], main, ['upstreams'], report, sources, resolvAt);
  // Forwarding to itself would loop every query until its deadline: refuse it before it runs.
  upstreams.forEach((u, k) => {
    const own = listen.find((l) => l.host === u.host && l.port === u.port);
    if (!own) return;
    const where = own.host.includes(':') ? `[${own.host}]:${own.port}` : `${own.host}:${own.port}`;
    const msg = `upstream ${where} is one of linedns's own listen addresses, so every forwarded query would come back to linedns; expected the address of another resolver`;
    const i = sources[k]!;
    if (overrides.upstreams) report.syntax('--upstream', 0, 0, msg);
    else if (main && Array.isArray(raw.upstreams)) report.at(main, ['upstreams', i], msg);
    else report.syntax('/etc/resolv.conf', resolvAt[k]?.line ?? 0, resolvAt[k]?.column ?? 0, msg);
  });

  // pipeline
  const pipelineIn = Array.isArray(raw.pipeline) ? (raw.pipeline as unknown[]).filter((x): x is string => typeof x === 'string') : [...DEFAULT_PIPELINE];
  const pipeline: string[] = [];
  pipelineIn.forEach((entry, i) => {
    const isPath = entry.startsWith('.') || entry.startsWith('/') || /\.(m?js)$/.test(entry);
    if (isPath) {
      const abs = relativeTo(path, entry);
      if (!existsSync(abs)) main && report.at(main, ['pipeline', i], `${show(entry)}: no such file (${abs}); expected a built-in stage or the path of a stage module`);
      pipeline.push(abs);
    } else if ((BUILTIN_STAGES as readonly string[]).includes(entry)) {
      pipeline.push(entry);
    } else if (main) {
      const hint = suggest(entry, BUILTIN_STAGES);
      report.at(main, ['pipeline', i], `unknown stage ${show(entry)}${hint ? ` (did you mean "${hint}"?)` : ''}; expected one of ${BUILTIN_STAGES.join(', ')} or a path such as "./stages/mine.js"`);
    }
  });
  const decodeAt = pipeline.indexOf('decode');
  const firstBuiltin = pipeline.findIndex((s) => s !== 'decode' && (BUILTIN_STAGES as readonly string[]).includes(s));
  if (main && firstBuiltin >= 0 && (decodeAt < 0 || decodeAt > firstBuiltin)) {
    report.at(main, ['pipeline'], `"decode" must come before "${pipeline[firstBuiltin]}": built-in stages read the decoded query`);
  }
  // A stage's settings without the stage do nothing, which is easy to miss (a rate limit that
  // never limits): warn, but run, since a stage may be left out on purpose for a while.
  if (main) {
    for (const key of Object.keys(raw)) {
      const stage = STAGE_OF_KEY[key];
      if (stage === undefined || pipeline.includes(stage)) continue;
      report.at(main, [key], `"${key}" is set but the "${stage}" stage is not in the pipeline, so it has no effect; expected "${stage}" in "pipeline", or no "${key}"`, 'warning', true);
    }
  }

  // access lists
  const allow = Array.isArray(raw.allow) ? (raw.allow as unknown[]).filter((x): x is string => typeof x === 'string') : ['127.0.0.0/8', '::1/128'];
  const trustEcsFrom = Array.isArray(raw.trustEcsFrom) ? (raw.trustEcsFrom as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  if (main) {
    checkCidrs(main, raw.allow, ['allow'], report);
    checkCidrs(main, raw.trustEcsFrom, ['trustEcsFrom'], report);
  }

  // smart-line.json, then records.json (which is checked against the lines)
  const smartLinePath = overrides.smartLine ? resolve(overrides.smartLine) : str(raw.smartLine) ? relativeTo(path, str(raw.smartLine)!) : null;
  let smartLine: Record<string, string[]> = {};
  let lineNames: Set<string> | null = null;
  if (smartLinePath) {
    const f = readJson(smartLinePath, report);
    if (f) {
      const valid = validateSchema(f, 'smart-line', report);
      const lines = obj(f.value);
      // Checked even when the schema failed, so one run lists every error of the file.
      for (const line of Object.keys(lines)) checkCidrs(f, lines[line], [line], report);
      lineNames = new Set(Object.keys(lines));
      if (valid) smartLine = lines as Record<string, string[]>;
    }
  }
  const recordsPath = overrides.records ? resolve(overrides.records) : str(raw.records) ? relativeTo(path, str(raw.records)!) : null;
  let records: RecordEntry[] = [];
  if (recordsPath) {
    const f = readJson(recordsPath, report);
    if (f) {
      const valid = validateSchema(f, 'records', report);
      if (Array.isArray(f.value)) {
        const checked = checkRecords(f, lineNames ?? new Set(), report);
        if (valid) records = checked;
      }
    }
  }

  // The label filter is the smartline stage: records alone would give every client every
  // labelled record. Either side of records is safe (docs/stages.md), none is a leak.
  const labelled = records.find((e) => e.labels && e.labels.length > 0);
  if (main && Array.isArray(raw.pipeline) && labelled && pipeline.includes('records') && !pipeline.includes('smartline')) {
    report.at(main, ['pipeline'], `records.json has labelled records ("${labelled.name}" for ${labelled.labels!.map((l) => `"${l}"`).join(', ')}) but the pipeline has no "smartline" stage, the filter that shows them only to their lines: without it every client would see every labelled record; expected "smartline" in the pipeline, after "records" or before it (e.g. ${DEFAULT_PIPELINE.map((s) => `"${s}"`).join(', ')})`);
  }

  const cacheIn = obj(raw.cache);
  const cache = {
    maxEntries: int(cacheIn.maxEntries, 100_000),
    minTtl: int(cacheIn.minTtl, 0),
    maxTtl: int(cacheIn.maxTtl, 86_400),
    negativeTtl: int(cacheIn.negativeTtl, 900),
  };
  if (main && cache.minTtl > cache.maxTtl) report.at(main, ['cache', 'minTtl'], `minTtl ${cache.minTtl} is above maxTtl ${cache.maxTtl}`);
  const fwd = obj(raw.forward);
  if (main && typeof fwd.sourcePorts === 'number' && fwd.sourcePorts < DEFAULT_SOURCE_PORTS) {
    report.at(main, ['forward', 'sourcePorts'], `${fwd.sourcePorts} source ports leave an off-path forger ${fwd.sourcePorts} x 65,536 port and ID combinations per query, fewer than 2^26; expected at least ${DEFAULT_SOURCE_PORTS} unless every path to the upstreams is trusted`, 'warning');
  }
  const forward = { timeoutMs: int(fwd.timeout, 2000), deadlineMs: int(fwd.deadline, 4500), maxOutstanding: int(fwd.maxOutstanding, 10_000), randomizeCase: fwd.randomizeCase === true, sourcePorts: int(fwd.sourcePorts, DEFAULT_SOURCE_PORTS) };
  const tcpIn = obj(raw.tcp);
  const tcp = {
    idleTimeoutMs: int(tcpIn.idleTimeout, 10_000),
    maxConnectionMs: int(tcpIn.maxConnectionTime, 120_000),
    maxConnections: int(tcpIn.maxConnections, 1000),
    maxConnectionsPerClient: int(tcpIn.maxConnectionsPerClient, 64),
    maxQueriesPerConnection: int(tcpIn.maxQueriesPerConnection, 10_000),
    maxPipelined: int(tcpIn.maxPipelined, 128),
  };
  const rl = raw.rateLimit === undefined ? null : obj(raw.rateLimit);
  const rateLimit = rl === null
    ? null
    : {
        qps: int(rl.qps, 100),
        burst: int(rl.burst, Math.max(1, Math.ceil(int(rl.qps, 100) * 2))),
        ipv4Prefix: int(rl.ipv4Prefix, 24),
        ipv6Prefix: int(rl.ipv6Prefix, 56),
        action: (rl.action as 'refuse' | 'drop' | undefined) ?? 'refuse',
        maxClients: int(rl.maxClients, 100_000),
      };

  if (report.failed) throw new ConfigError(report.issues);
  const config: RuntimeConfig = {
    file: path,
    listen,
    upstreams,
    pipeline,
    records,
    recordsFile: recordsPath,
    smartLine,
    smartLineFile: smartLinePath,
    smartLineUnmatched: (raw.smartLineUnmatched as 'all' | 'unlabelled' | undefined) ?? 'all',
    cache,
    allow,
    trustEcsFrom,
    forward,
    tcp,
    rateLimit,
    maxUdpSize: int(raw.maxUdpSize, 1232),
    answerMemo: raw.answerMemo !== false,
    logLevel: overrides.logLevel ?? (raw.logLevel as LogLevel | undefined) ?? 'info',
    workers: overrides.workers ?? int(raw.workers, 1),
  };
  return { config, warnings: sortIssues(report.issues) };
}
