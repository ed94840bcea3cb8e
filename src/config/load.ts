// Loads linedns.json and the files it names into one frozen RuntimeConfig: reads each as a JSON
// document with positions, validates it, checks what a schema cannot, and reports every problem.

import { dirname, resolve } from 'node:path';
import { badCidrs, formatHostPort } from '../lib/net/address.js';
import { LOG_LEVELS, type Logger, type LogLevel } from '../lib/logger.js';
import { isWildcard, parseHostPort, upstreamsFrom, WILDCARD_WHY, withValue } from './addresses.js';
import { ConfigError, Reporter, failureLines, formatIssue, show, sortIssues, type ConfigIssue, type LoadedFile } from './issues.js';
import { loadPipeline, type StageCatalog } from './pipeline.js';
import { checkRecords } from './records.js';
import { loadZones } from './zones.js';
import { loadRewrite } from './rewrite.js';
import { loadRoutes } from './routes.js';
import { loadGolden } from './golden.js';
import type { ResolvConfNameserver } from './resolvconf.js';
import { composeLinednsSchema } from './schema.js';
import { fileSchema, fileValidator, validatorFor, type FileSchemaName } from './schemas.js';
import { readJson, validateSchema, type SchemaCheck } from './validate.js';
import type { AdminConfig, GoldenFile, ListenAddress, PipelineFacts, RecordEntry, RuntimeConfig, SourcesConfig, UpstreamConfig } from './types.js';
import { isSourceUrl, type SourceDocuments } from './sources.js';
import { JsonDocument } from './json.js';
import { readFileSync } from 'node:fs';

export { DEFAULT_PIPELINE, type StageCatalog } from './pipeline.js';
export { ConfigError, failureLines, formatIssue, type ConfigIssue } from './issues.js';
export { CLI_CODES, CONFIG_CODES, type CliCode, type ConfigCode } from './codes.js';
export { parseHostPort } from './addresses.js';
export { isSourceUrl, type SourceDocument, type SourceDocuments } from './sources.js';

export const DEFAULT_LISTEN = ['127.0.0.1:5300', '[::1]:5300'];

/** Command-line flags; each replaces the config file's value. */
export interface ConfigOverrides {
  listen?: string[];
  upstreams?: string[];
  records?: string;
  smartLine?: string;
  workers?: number;
  logLevel?: LogLevel;
  /** --admin HOST:PORT: where the admin endpoint listens (its allow list stays the file's). */
  admin?: string;
}

const linednsChecks = new WeakMap<StageCatalog, SchemaCheck>();

/** linedns.json's schema: its own keys and the options of the catalog's stages. */
export function linednsSchema(catalog: StageCatalog): object {
  return composeLinednsSchema([...catalog.values()]);
}

function linednsCheck(catalog: StageCatalog): SchemaCheck {
  let c = linednsChecks.get(catalog);
  if (c === undefined) {
    let schema: object | null = null;
    const get = (): object => (schema ??= linednsSchema(catalog));
    c = { validate: validatorFor('linedns', get), schema: get };
    linednsChecks.set(catalog, c);
  }
  return c;
}

function fileCheck(name: FileSchemaName): SchemaCheck {
  return { validate: fileValidator(name), schema: () => fileSchema(name) };
}

/** Frozen all the way down: a stage can no more change the config it was given than the file. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/**
 * Loads `file` again for a reload (SIGHUP, in a single process or a --workers primary), logging
 * its warnings; when it is invalid, logs every error and returns null: the running one stays.
 */
export function reloadConfig(catalog: StageCatalog, file: string | null, overrides: ConfigOverrides, logger: Logger, documents?: SourceDocuments): RuntimeConfig | null {
  try {
    const { config, warnings } = loadConfig(catalog, file, overrides, documents);
    for (const w of warnings) logger.warn(formatIssue(w));
    return config;
  } catch (err) {
    logger.error({ errors: failureLines(err) }, 'reload failed; keeping the last good configuration');
    return null;
  }
}

/** Who may use the admin endpoint when `allow` is not written: this host only. */
export const DEFAULT_ADMIN_ALLOW: readonly string[] = ['127.0.0.0/8', '::1/128'];

/**
 * `admin`: "HOST:PORT" or {listen, allow}. A wildcard is accepted only beside an explicit
 * `allow` (unlike DNS `listen`, TCP replies leave from the address asked, so a wildcard works;
 * but opening metrics and cache flushes to every interface must be a deliberate choice).
 */
function loadAdmin(value: unknown, flag: string | undefined, main: LoadedFile | null, report: Reporter): AdminConfig | null {
  if (value === undefined && flag === undefined) return null;
  const isObj = typeof value === 'object' && value !== null && !Array.isArray(value);
  // The flag names the address (a pod IP known only at start); the file keeps the allow list.
  const text = flag ?? (typeof value === 'string' ? value : isObj ? (value as { listen?: unknown }).listen : undefined);
  const at = isObj ? ['admin', 'listen'] : ['admin'];
  const problem = (code: 'LDNS_BAD_ADDRESS' | 'LDNS_ADMIN_WILDCARD', message: string): void => {
    if (flag !== undefined) report.syntax('--admin', 0, 0, code, message);
    else if (main !== null && !report.has(main, at)) report.at(main, at, code, message);
  };
  // Anything else is a schema error, reported already.
  if (typeof text !== 'string') return null;
  const allowIn = isObj ? (value as { allow?: unknown }).allow : undefined;
  const allow = Array.isArray(allowIn) ? allowIn.filter((c): c is string => typeof c === 'string') : null;
  if (allow !== null && main !== null) for (const bad of badCidrs(allow)) report.at(main, ['admin', 'allow', bad.index], 'LDNS_BAD_CIDR', bad.message);
  const hp = parseHostPort(text, null);
  if (typeof hp === 'string') {
    problem('LDNS_BAD_ADDRESS', `${withValue(text, hp)}; expected HOST:PORT, with IPv6 written [ADDR]:PORT`);
    return null;
  }
  if (isWildcard(hp.host) && allow === null) {
    problem('LDNS_ADMIN_WILDCARD', `${show(text)} is a wildcard address and no "allow" is given; expected {"listen": ${show(text)}, "allow": ["CIDR", ...]} naming who may read metrics and flush the cache, or a single address such as "127.0.0.1:9153"`);
    return null;
  }
  return { host: hp.host, port: hp.port, allow: allow ?? DEFAULT_ADMIN_ALLOW };
}

function relativeTo(base: string | null, p: string): string {
  return isSourceUrl(p) ? p : resolve(base ? dirname(base) : process.cwd(), p);
}

/** A path from a flag: a URL as written, a file from the working directory. */
function fromFlag(p: string): string {
  return isSourceUrl(p) ? p : resolve(p);
}

export const DEFAULT_SOURCES_DIR = '/var/lib/linedns/sources';
export const DEFAULT_RESOLV_CONF = '/etc/resolv.conf';

/** `sources` with its defaults; `dir` relative to linedns.json. */
function sourcesConfig(value: unknown, base: string | null): SourcesConfig {
  const o = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  const num = (v: unknown, d: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : d);
  return {
    intervalMs: num(o.interval, 30) * 1000,
    jitter: num(o.jitter, 0.2),
    dir: typeof o.dir === 'string' ? relativeTo(base, o.dir) : DEFAULT_SOURCES_DIR,
    timeoutMs: num(o.timeout, 10) * 1000,
    maxBytes: num(o.maxSize, 64 * 1024 * 1024),
  };
}

/** What must be fetched before linedns.json can be loaded: its URL sources and how to poll them. */
export interface SourcePlan {
  urls: string[];
  sources: SourcesConfig;
  logLevel: LogLevel;
}

/**
 * Reads linedns.json only for its URL sources (records, smartLine, zones, rewriteFrom) and its
 * `sources` and `logLevel`, tolerating any error: loadConfig reports those, with the rest.
 */
export function sourcePlan(file: string | null, overrides: ConfigOverrides = {}): SourcePlan {
  const path = file ? resolve(file) : null;
  let raw: Record<string, unknown> = {};
  if (path !== null) {
    try {
      const doc = JsonDocument.fromBytes(readFileSync(path));
      if (!Array.isArray(doc) && typeof doc.value === 'object' && doc.value !== null && !Array.isArray(doc.value)) raw = doc.value as Record<string, unknown>;
    } catch {
      // Unreadable: loadConfig says so.
    }
  }
  const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const zoneFiles = Array.isArray(raw.zones) ? raw.zones.map((z: unknown) => (typeof z === 'string' ? z : str((z as { file?: unknown } | null)?.file))) : [];
  const named = [overrides.records ?? str(raw.records), overrides.smartLine ?? str(raw.smartLine), ...zoneFiles, str(raw.rewriteFrom)];
  const urls = [...new Set(named.filter((p): p is string => p !== null && isSourceUrl(p)))];
  const level = raw.logLevel;
  const logLevel = overrides.logLevel ?? ((LOG_LEVELS as readonly unknown[]).includes(level) ? (level as LogLevel) : 'info');
  return { urls, sources: sourcesConfig(raw.sources, path), logLevel };
}

/**
 * Loads and validates everything. Throws ConfigError listing every error (and warning) found;
 * otherwise returns the config and the warnings.
 */
export function loadConfig(catalog: StageCatalog, file: string | null, overrides: ConfigOverrides = {}, documents?: SourceDocuments): { config: RuntimeConfig; warnings: ConfigIssue[] } {
  const report = new Reporter();
  const path = file ? resolve(file) : null;
  let raw: Record<string, unknown> = {};
  let main: LoadedFile | null = null;
  if (path) {
    main = readJson(path, report);
    if (main) validateSchema(main, linednsCheck(catalog), report);
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
      if (overrides.listen) report.syntax('--listen', 0, 0, 'LDNS_LISTEN_WILDCARD', msg);
      else if (main) report.at(main, ['listen', i], 'LDNS_LISTEN_WILDCARD', msg);
    } else if (typeof hp !== 'string') listen.push(hp);
    else if (overrides.listen) report.syntax('--listen', 0, 0, 'LDNS_BAD_ADDRESS', withValue(t, hp));
    // Checked even when the schema failed elsewhere, so one run lists every error of the file.
    else if (main && !report.has(main, ['listen', i])) report.at(main, ['listen', i], 'LDNS_BAD_ADDRESS', `${withValue(t, hp)}; expected HOST:PORT, with IPv6 written [ADDR]:PORT`);
  });

  // upstreams
  let upstreams: UpstreamConfig[];
  const sources: number[] = [];
  const resolvAt: Array<ResolvConfNameserver | null> = [];
  const resolvConfPath = str(raw.resolvConf) ? relativeTo(path, str(raw.resolvConf)!) : DEFAULT_RESOLV_CONF;
  const upstreamList = overrides.upstreams ?? (Array.isArray(raw.upstreams) ? (raw.upstreams as unknown[]) : ['resolv.conf']);
  if (overrides.upstreams) upstreams = upstreamsFrom(overrides.upstreams, null, [], report, sources, resolvAt, resolvConfPath);
  else upstreams = upstreamsFrom(upstreamList, main, ['upstreams'], report, sources, resolvAt, resolvConfPath);
  // Forwarding to itself would loop every query until its deadline: refuse it before it runs.
  upstreams.forEach((u, k) => {
    const own = listen.find((l) => l.host === u.host && l.port === u.port);
    if (!own) return;
    const where = formatHostPort(own.host, own.port);
    const msg = `upstream ${where} is one of linedns's own listen addresses, so every forwarded query would come back to linedns; expected the address of another resolver`;
    const i = sources[k]!;
    if (overrides.upstreams) report.syntax('--upstream', 0, 0, 'LDNS_UPSTREAM_SELF', msg);
    else if (main && Array.isArray(raw.upstreams)) report.at(main, ['upstreams', i], 'LDNS_UPSTREAM_SELF', msg);
    else report.syntax(resolvConfPath, resolvAt[k]?.line ?? 0, resolvAt[k]?.column ?? 0, 'LDNS_UPSTREAM_SELF', msg);
  });

  // smart-line.json, then records.json (which is checked against the lines)
  const smartLinePath = overrides.smartLine ? fromFlag(overrides.smartLine) : str(raw.smartLine) ? relativeTo(path, str(raw.smartLine)!) : null;
  let smartLine: Record<string, string[]> = {};
  let lineNames: Set<string> | null = null;
  // A path from the file (not a flag) is where an unreadable file is reported.
  const namedAt = (key: string): { f: LoadedFile; path: string[] } | undefined => (main && raw[key] !== undefined ? { f: main, path: [key] } : undefined);
  if (smartLinePath) {
    const f = readJson(smartLinePath, report, overrides.smartLine ? undefined : namedAt('smartLine'), documents);
    if (f) {
      const valid = validateSchema(f, fileCheck('smart-line'), report);
      const lines = obj(f.value);
      // Checked even when the schema failed, so one run lists every error of the file.
      for (const line of Object.keys(lines)) {
        const list = lines[line];
        if (!Array.isArray(list)) continue;
        for (const bad of badCidrs(list.filter((c): c is string => typeof c === 'string'))) report.at(f, [line, bad.index], 'LDNS_BAD_CIDR', bad.message);
      }
      lineNames = new Set(Object.keys(lines));
      if (valid) smartLine = lines as Record<string, string[]>;
    }
  }
  const recordsPath = overrides.records ? fromFlag(overrides.records) : str(raw.records) ? relativeTo(path, str(raw.records)!) : null;
  let records: RecordEntry[] = [];
  if (recordsPath) {
    const f = readJson(recordsPath, report, overrides.records ? undefined : namedAt('records'), documents);
    if (f) {
      const valid = validateSchema(f, fileCheck('records'), report);
      if (Array.isArray(f.value)) {
        const checked = checkRecords(f, lineNames ?? new Set(), report);
        if (valid) records = checked;
      }
    }
  }

  const { zones, labelledZone } = loadZones(raw, main, (p) => relativeTo(path, p), lineNames, report, documents);
  const rewriteFile = str(raw.rewriteFrom) ? relativeTo(path, str(raw.rewriteFrom)!) : null;
  const rewrite = loadRewrite(raw, main, rewriteFile, lineNames ?? new Set(), report, documents);

  const { routes, labelledRoute } = loadRoutes(raw, main, lineNames, listen, report);

  const labelled = records.find((e) => e.labels && e.labels.length > 0);
  const labelledRewrite = rewrite.find((r) => r.labels !== null);
  const facts: PipelineFacts = {
    labelledRecord: labelled ? { name: labelled.name, labels: labelled.labels! } : null,
    labelledZone,
    labelledRewrite: labelledRewrite ? { from: `${labelledRewrite.suffix ? '*.' : ''}${labelledRewrite.from}`, labels: labelledRewrite.labels! } : null,
    labelledRoute,
  };
  const pipeline = loadPipeline(catalog, raw, main, report, (p) => relativeTo(path, p), facts);
  const tcpIn = obj(raw.tcp);
  const tcp = {
    idleTimeoutMs: int(tcpIn.idleTimeout, 10_000),
    maxConnectionMs: int(tcpIn.maxConnectionTime, 120_000),
    maxConnections: int(tcpIn.maxConnections, 1000),
    maxConnectionsPerClient: int(tcpIn.maxConnectionsPerClient, 64),
    maxQueriesPerConnection: int(tcpIn.maxQueriesPerConnection, 10_000),
    maxPipelined: int(tcpIn.maxPipelined, 128),
  };

  // Golden queries: read with the rest, so `check` and a reload reject a broken tests file too.
  const testsFile = str(raw.tests) ? relativeTo(path, str(raw.tests)!) : null;
  const tests: GoldenFile | null = testsFile ? loadGolden(testsFile, report, namedAt('tests')) : null;
  const admin = loadAdmin(raw.admin, overrides.admin, main, report);

  if (report.failed) throw new ConfigError(report.issues);
  const config: RuntimeConfig = {
    file: path,
    listen,
    upstreams,
    routes,
    pipeline,
    facts,
    records,
    recordsFile: recordsPath,
    zones,
    smartLine,
    smartLineFile: smartLinePath,
    smartLineUnmatched: (raw.smartLineUnmatched as 'all' | 'unlabelled' | undefined) ?? 'all',
    rewrite,
    rewriteFile,
    tcp,
    maxUdpSize: int(raw.maxUdpSize, 1232),
    unanswered: (raw.unanswered as RuntimeConfig['unanswered'] | undefined) ?? 'refused',
    answerMemo: raw.answerMemo !== false,
    watch: raw.watch !== false,
    logLevel: overrides.logLevel ?? (raw.logLevel as LogLevel | undefined) ?? 'info',
    workers: overrides.workers ?? int(raw.workers, 1),
    tests,
    testsFile,
    admin,
    sourceUrls: [...new Set([recordsPath, smartLinePath, ...zones.map((z) => z.file), rewriteFile].filter((p): p is string => p !== null && isSourceUrl(p)))],
    sources: sourcesConfig(raw.sources, path),
    resolvConf: upstreamList.includes('resolv.conf') ? resolvConfPath : null,
  };
  return { config: deepFreeze(config), warnings: sortIssues(report.issues) };
}
