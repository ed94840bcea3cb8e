// Every config issue code of src/config/codes.ts: a minimal config that triggers exactly it, at a
// known place, and a section of docs/errors.md that explains it (fastify's Errors.md idea).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { builtinSchema, loadConfig } from '../src/app/config.js';
import { CLI_CODES, CONFIG_CODES, ConfigError, formatIssue, type CliCode, type ConfigCode, type ConfigIssue } from '../src/config/load.js';
import { fileSchema } from '../src/config/schemas.js';
import { WORDED_KEYWORDS } from '../src/config/validate.js';
import { writeConfig, type TestFiles } from './helpers/server.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = new URL('../src/cli.js', import.meta.url).pathname;
const UP = ['127.0.0.1:9'];
const A = { name: 'a.test', type: 'A', rdata: '192.0.2.1' };
/** A pipeline with the zones stage, and a zone with its apex records. */
const ZP = ['decode', 'zones', 'forward'];
/** A pipeline with the rewrite stage. */
const RP = ['decode', 'rewrite', 'forward'];
const ZONE = `$ORIGIN z.test.\n@ 3600 IN SOA ns.z.test. hostmaster.z.test. 1 3600 600 86400 300\n@ 3600 IN NS ns.z.test.\nns 3600 IN A 192.0.2.53\n`;

interface Row {
  code: ConfigCode;
  severity: 'error' | 'warning';
  files: TestFiles;
  /** Changes the written files before the load (bytes writeConfig cannot write as text). */
  setup?: (dir: string) => void;
  /** Where the issue is reported: `FILE:LINE:COL PATH`, FILE as its base name. */
  at: string;
}

const ROWS: Row[] = [
  { code: 'LDNS_FILE_UNREADABLE', severity: 'error', files: { config: { upstreams: UP, records: 'missing.json' } }, at: 'linedns.json:8:14 $.records' },
  {
    code: 'LDNS_JSON_ENCODING',
    severity: 'error',
    files: { config: { upstreams: UP, records: 'records.json' } },
    setup: (dir) => writeFileSync(join(dir, 'records.json'), Buffer.from([0x5b, 0x22, 0xff, 0x22, 0x5d])),
    at: 'records.json:1:3 $',
  },
  { code: 'LDNS_JSON_SYNTAX', severity: 'error', files: { config: { upstreams: UP, records: 'records.json' }, extra: { 'records.json': '[1 2]' } }, at: 'records.json:1:4 $' },
  {
    code: 'LDNS_JSON_DEPTH',
    severity: 'error',
    files: { config: { upstreams: UP, records: 'records.json' }, extra: { 'records.json': `${'['.repeat(65)}${']'.repeat(65)}` } },
    at: 'records.json:1:65 $',
  },
  {
    code: 'LDNS_DUPLICATE_KEY',
    severity: 'error',
    files: { config: { upstreams: UP, smartLine: 'smart-line.json' }, extra: { 'smart-line.json': '{\n  "office": ["10.0.0.0/8"],\n  "office": []\n}\n' } },
    at: 'smart-line.json:3:3 $.office',
  },
  { code: 'LDNS_SCHEMA_TYPE', severity: 'error', files: { config: { upstreams: UP, workers: 'two' } }, at: 'linedns.json:8:14 $.workers' },
  { code: 'LDNS_SCHEMA_REQUIRED', severity: 'error', files: { config: { upstreams: [...UP, { port: 53 }] } }, at: 'linedns.json:7:5 $.upstreams[1]' },
  { code: 'LDNS_SCHEMA_UNKNOWN_PROPERTY', severity: 'error', files: { config: { upstreams: UP, cahce: {} } }, at: 'linedns.json:8:3 $.cahce' },
  { code: 'LDNS_SCHEMA_ENUM', severity: 'error', files: { config: { upstreams: UP, logLevel: 'loud' } }, at: 'linedns.json:8:15 $.logLevel' },
  { code: 'LDNS_SCHEMA_PATTERN', severity: 'error', files: { config: { listen: ['localhost'], upstreams: UP } }, at: 'linedns.json:3:5 $.listen[0]' },
  { code: 'LDNS_SCHEMA_RANGE', severity: 'error', files: { config: { upstreams: UP, forward: { timeout: 5 } } }, at: 'linedns.json:9:16 $.forward.timeout' },
  { code: 'LDNS_SCHEMA_SIZE', severity: 'error', files: { config: { listen: [], upstreams: UP } }, at: 'linedns.json:2:13 $.listen' },
  { code: 'LDNS_BAD_ADDRESS', severity: 'error', files: { config: { upstreams: [...UP, 'dns.example'] } }, at: 'linedns.json:7:5 $.upstreams[1]' },
  { code: 'LDNS_LISTEN_WILDCARD', severity: 'error', files: { config: { listen: ['0.0.0.0:5300'], upstreams: UP } }, at: 'linedns.json:3:5 $.listen[0]' },
  { code: 'LDNS_ADMIN_WILDCARD', severity: 'error', files: { config: { upstreams: UP, admin: '0.0.0.0:9153' } }, at: 'linedns.json:8:12 $.admin' },
  { code: 'LDNS_UPSTREAM_PORT_ZERO', severity: 'error', files: { config: { upstreams: [...UP, '127.0.0.1:0'] } }, at: 'linedns.json:7:5 $.upstreams[1]' },
  { code: 'LDNS_UPSTREAM_SELF', severity: 'error', files: { config: { listen: ['127.0.0.1:5399'], upstreams: ['127.0.0.1:5399'] } }, at: 'linedns.json:6:5 $.upstreams[0]' },
  { code: 'LDNS_TLS_SERVERNAME', severity: 'error', files: { config: { upstreams: [...UP, { address: '127.0.0.1', protocol: 'tls' }] } }, at: 'linedns.json:7:5 $.upstreams[1]' },
  { code: 'LDNS_TLS_PIN', severity: 'error', files: { config: { upstreams: [...UP, { address: '127.0.0.1', protocol: 'tls', pin: ['sha256/short'] }] } }, at: 'linedns.json:11:9 $.upstreams[1].pin[0]' },
  { code: 'LDNS_TLS_CA', severity: 'error', files: { config: { upstreams: [...UP, { address: '127.0.0.1', protocol: 'tls', servername: 'dns.test', ca: 'missing.pem' }] } }, at: 'linedns.json:11:13 $.upstreams[1].ca' },
  { code: 'LDNS_ROUTE_ZONE', severity: 'error', files: { config: { upstreams: UP, routes: [{ zone: 'a..test', upstreams: UP }] } }, at: 'linedns.json:10:15 $.routes[0].zone' },
  { code: 'LDNS_ROUTE_DUPLICATE', severity: 'error', files: { config: { upstreams: UP, routes: [{ zone: 'a.test', upstreams: UP }, { zone: 'A.test.', upstreams: UP }] } }, at: 'linedns.json:16:15 $.routes[1].zone' },
  {
    code: 'LDNS_ROUTE_UNKNOWN_LABEL',
    severity: 'error',
    files: { config: { upstreams: UP, pipeline: ['decode', 'smartline', 'forward'], routes: [{ zone: 'a.test', upstreams: UP, labels: ['branch'] }] }, smartLine: { office: ['10.0.0.0/8'] } },
    at: 'linedns.json:20:9 $.routes[0].labels[0]',
  },
  { code: 'LDNS_BAD_CIDR', severity: 'error', files: { config: { upstreams: UP, allow: ['10.0.0.0/33'] } }, at: 'linedns.json:9:5 $.allow[0]' },
  { code: 'LDNS_RECORD_NAME', severity: 'error', files: { config: { upstreams: UP }, records: [{ ...A, name: 'a..test' }] }, at: 'records.json:3:13 $[0].name' },
  { code: 'LDNS_RECORD_ADDRESS', severity: 'error', files: { config: { upstreams: UP }, records: [{ ...A, rdata: '999.1.1.1' }] }, at: 'records.json:5:14 $[0].rdata' },
  {
    code: 'LDNS_RECORD_TXT_LENGTH',
    severity: 'error',
    files: { config: { upstreams: UP }, records: [{ name: 't.test', type: 'TXT', rdata: 'x'.repeat(256) }] },
    at: 'records.json:5:14 $[0].rdata',
  },
  {
    code: 'LDNS_RECORD_SOA_WILDCARD',
    severity: 'error',
    files: {
      config: { upstreams: UP },
      records: [{ name: '*.test', type: 'SOA', rdata: { mname: 'ns.test', rname: 'hostmaster.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: 300 } }],
    },
    at: 'records.json:3:13 $[0].name',
  },
  {
    code: 'LDNS_RECORD_CNAME_CONFLICT',
    severity: 'error',
    files: { config: { upstreams: UP }, records: [{ name: 'a.test', type: 'CNAME', rdata: 'b.test' }, A] },
    at: 'records.json:2:3 $[0]',
  },
  {
    code: 'LDNS_RECORD_RDATA_IGNORED',
    severity: 'warning',
    files: { config: { upstreams: UP }, records: [{ name: 'a.test', action: 'nxdomain', rdata: '192.0.2.1' }] },
    at: 'records.json:5:14 $[0].rdata',
  },
  {
    code: 'LDNS_RECORD_UNKNOWN_LABEL',
    severity: 'warning',
    files: { config: { upstreams: UP }, smartLine: { office: ['10.0.0.0/8'] }, records: [{ ...A, labels: ['branch'] }] },
    at: 'records.json:7:7 $[0].labels[0]',
  },
  { code: 'LDNS_UNKNOWN_STAGE', severity: 'error', files: { config: { upstreams: UP, pipeline: ['decode', 'cahce', 'forward'] } }, at: 'linedns.json:10:5 $.pipeline[1]' },
  {
    code: 'LDNS_STAGE_MODULE_MISSING',
    severity: 'error',
    files: { config: { upstreams: UP, pipeline: ['decode', './missing.js', 'forward'] } },
    at: 'linedns.json:10:5 $.pipeline[1]',
  },
  { code: 'LDNS_REQUIREMENT', severity: 'error', files: { config: { upstreams: UP, pipeline: ['forward'] } }, at: 'linedns.json:9:5 $.pipeline[0]' },
  {
    code: 'LDNS_UNUSED_KEY',
    severity: 'warning',
    files: { config: { upstreams: UP, cache: { maxEntries: 5 }, pipeline: ['decode', 'forward'] } },
    at: 'linedns.json:8:3 $.cache',
  },
  { code: 'LDNS_CACHE_TTL_ORDER', severity: 'error', files: { config: { upstreams: UP, cache: { minTtl: 600, maxTtl: 60 } } }, at: 'linedns.json:9:15 $.cache.minTtl' },
  { code: 'LDNS_WEAK_SOURCE_PORTS', severity: 'warning', files: { config: { upstreams: UP, forward: { sourcePorts: 16 } } }, at: 'linedns.json:9:20 $.forward.sourcePorts' },
  {
    code: 'LDNS_ECS_PREFIX_LONG',
    severity: 'warning',
    files: { config: { upstreams: UP, forward: { clientSubnet: { ipv4: 32, ipv6: 56 } } } },
    at: 'linedns.json:10:15 $.forward.clientSubnet.ipv4',
  },
  { code: 'LDNS_LOG_FILTER', severity: 'error', files: { config: { upstreams: UP, pipeline: [{ log: { rcodes: ['NOPE'] } }, 'decode', 'forward'] } }, at: 'linedns.json:12:11 $.pipeline[0].log.rcodes[0]' },
  // Zone files: each row a zone served by the zones stage, one problem in it.
  { code: 'LDNS_ZONE_ENTRY', severity: 'error', files: { config: { upstreams: UP, pipeline: ZP, zones: [{ file: 'z.zone', origin: 'z..test' }] }, extra: { 'z.zone': ZONE } }, at: 'linedns.json:16:17 $.zones[0].origin' },
  { code: 'LDNS_ZONE_SYNTAX', severity: 'error', files: { config: { upstreams: UP, pipeline: ZP, zones: ['z.zone'] }, extra: { 'z.zone': `${ZONE}www 60 IN A 300.1.1.1\n` } }, at: 'z.zone:5:13 $' },
  { code: 'LDNS_ZONE_SOA', severity: 'error', files: { config: { upstreams: UP, pipeline: ZP, zones: ['z.zone'] }, extra: { 'z.zone': '$ORIGIN z.test.\nwww 60 IN A 192.0.2.1\n' } }, at: 'z.zone:1:1 $' },
  { code: 'LDNS_ZONE_OUT_OF_ZONE', severity: 'error', files: { config: { upstreams: UP, pipeline: ZP, zones: ['z.zone'] }, extra: { 'z.zone': `${ZONE}www.other.test. 60 IN A 192.0.2.1\n` } }, at: 'z.zone:5:1 $' },
  { code: 'LDNS_ZONE_CNAME', severity: 'error', files: { config: { upstreams: UP, pipeline: ZP, zones: ['z.zone'] }, extra: { 'z.zone': `${ZONE}www 60 IN CNAME a.z.test.\nwww 60 IN A 192.0.2.1\n` } }, at: 'z.zone:6:1 $' },
  { code: 'LDNS_ZONE_DNAME', severity: 'warning', files: { config: { upstreams: UP, pipeline: ZP, zones: ['z.zone'] }, extra: { 'z.zone': `${ZONE}old 60 IN DNAME new.z.test.\nwww.old 60 IN A 192.0.2.1\n` } }, at: 'z.zone:6:1 $' },
  {
    code: 'LDNS_ZONE_UNKNOWN_LABEL',
    severity: 'warning',
    files: { config: { upstreams: UP, pipeline: ['decode', 'zones', 'smartline', 'forward'], zones: [{ file: 'z.zone', labels: ['branch'] }] }, smartLine: { office: ['10.0.0.0/8'] }, extra: { 'z.zone': ZONE } },
    at: 'linedns.json:18:9 $.zones[0].labels[0]',
  },
  // Rewrite rules: each row one problem in `rewrite` or the rewriteFrom file.
  { code: 'LDNS_REWRITE_NAME', severity: 'error', files: { config: { upstreams: UP, pipeline: RP, rewrite: [{ from: 'a..test', to: 'b.test' }] } }, at: 'linedns.json:15:15 $.rewrite[0].from' },
  { code: 'LDNS_REWRITE_FORM', severity: 'error', files: { config: { upstreams: UP, pipeline: RP, rewrite: [{ from: '*.a.test', to: 'b.test' }] } }, at: 'linedns.json:14:5 $.rewrite[0]' },
  {
    code: 'LDNS_REWRITE_DUPLICATE',
    severity: 'error',
    files: { config: { upstreams: UP, pipeline: RP, rewrite: [{ from: 'a.test', to: 'b.test' }, { from: 'a.test', to: 'c.test' }] } },
    at: 'linedns.json:19:15 $.rewrite[1].from',
  },
  {
    code: 'LDNS_REWRITE_CHAIN',
    severity: 'error',
    files: { config: { upstreams: UP, pipeline: RP, rewrite: [{ from: 'a.test', to: 'b.test' }, { from: 'b.test', to: 'c.test' }] } },
    at: 'linedns.json:16:13 $.rewrite[0].to',
  },
  {
    code: 'LDNS_REWRITE_UNKNOWN_LABEL',
    severity: 'warning',
    files: { config: { upstreams: UP, pipeline: ['decode', 'rewrite', 'smartline', 'forward'], rewrite: [{ from: 'a.test', to: 'b.test', labels: ['branch'] }] }, smartLine: { office: ['10.0.0.0/8'] } },
    at: 'linedns.json:19:9 $.rewrite[0].labels[0]',
  },
  // Golden queries: the tests file linedns.json names.
  {
    code: 'LDNS_GOLDEN_VALUE',
    severity: 'error',
    files: { config: { upstreams: UP, tests: 'golden.json' }, extra: { 'golden.json': '{\n  "tests": [\n    { "client": "office", "name": "a.test", "expect": { "rcode": "NOERROR" } }\n  ]\n}\n' } },
    at: 'golden.json:3:17 $.tests[0].client',
  },
];

/** Every issue of loading `configFile`: the warnings of a valid config, or all of a refused one. */
function issuesOf(configFile: string): ConfigIssue[] {
  try {
    return loadConfig(configFile).warnings;
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues;
  }
}

for (const row of ROWS) {
  test(`${row.code}: a minimal config triggers it alone, as ${row.severity}, at ${row.at}`, () => {
    const { dir, configFile } = writeConfig(row.files);
    row.setup?.(dir);
    const issues = issuesOf(configFile);
    assert.deepEqual(
      issues.map((i) => `${i.code} ${i.severity} ${basename(i.file)}:${i.line}:${i.column} ${i.path}`),
      [`${row.code} ${row.severity} ${row.at}`],
      issues.map(formatIssue).join('\n'),
    );
    assert.equal(CONFIG_CODES[row.code].severity, row.severity, 'the table and codes.ts agree on the severity');
    assert.ok(formatIssue(issues[0]!).endsWith(` [${row.code}]`), 'the printed line ends with the code');
  });
}

/** The command line's own errors: arguments that trigger each, before any file is read. */
const CLI_ROWS: { code: CliCode; args: string[] }[] = [
  { code: 'LDNS_CLI_USAGE', args: ['chekc'] },
  { code: 'LDNS_CLI_BAD_VALUE', args: ['check', '--workers', '0'] },
];

for (const row of CLI_ROWS) {
  test(`${row.code}: \`linedns ${row.args.join(' ')}\` exits 2 with it at the end of its first line`, () => {
    const res = spawnSync(process.execPath, [CLI, ...row.args], { encoding: 'utf8' });
    assert.equal(res.status, 2, res.stderr);
    assert.match(res.stderr.split('\n')[0]!, new RegExp(`^linedns: .* \\[${row.code}\\]$`));
  });
}

test('every code of codes.ts is triggered by the tables above, once', () => {
  assert.deepEqual(ROWS.map((r) => r.code).sort(), Object.keys(CONFIG_CODES).sort());
  assert.deepEqual(CLI_ROWS.map((r) => r.code).sort(), Object.keys(CLI_CODES).sort());
});

/** docs/errors.md's sections: `### CODE` heading -> its text (up to the next heading). */
function docSections(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
  const sections = new Map<string, string>();
  for (const part of text.split(/^### /m).slice(1)) {
    const [heading, ...body] = part.split(/^## /m)[0]!.split('\n');
    sections.set(heading!.trim(), body.join('\n'));
  }
  return sections;
}

test('docs/errors.md explains every code, and only codes that exist: meaning, example, fix', () => {
  const sections = docSections();
  const all = { ...CONFIG_CODES, ...CLI_CODES };
  assert.deepEqual([...sections.keys()].sort(), Object.keys(all).sort());
  for (const [code, body] of sections) {
    const severity = all[code as ConfigCode | CliCode].severity;
    // A config issue's line names its severity; the command line's start with "linedns:".
    const line = code in CLI_CODES ? `^linedns: .* \\[${code}\\]$` : `: ${severity}: .* \\[${code}\\]$`;
    assert.match(body, new RegExp(`\\*\\*${severity}\\*\\*`), `${code}: its section names its severity`);
    assert.match(body, new RegExp(line, 'm'), `${code}: its section shows an example line with the code`);
    assert.match(body, /\*\*Fix:\*\*/, `${code}: its section says how to fix it`);
  }
});

/** The keywords `schema` uses (not property names, and not inside `if`, whose failures are no error). */
function keywords(schema: unknown, out: Set<string>): Set<string> {
  if (Array.isArray(schema)) schema.forEach((s) => keywords(s, out));
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return out;
  for (const [k, v] of Object.entries(schema)) {
    out.add(k);
    if (k === 'properties' || k === 'patternProperties' || k === '$defs') for (const s of Object.values(v as object)) keywords(s, out);
    else if (['items', 'additionalProperties', 'propertyNames', 'then', 'else', 'not', 'oneOf', 'anyOf', 'allOf'].includes(k)) keywords(v, out);
  }
  return out;
}

test("every schema keyword linedns uses is worded with a code of its own (none falls to describeError's fallback)", () => {
  const used = keywords([builtinSchema(), fileSchema('records'), fileSchema('smart-line'), fileSchema('tests')], new Set());
  assert.deepEqual([...used].filter((k) => !WORDED_KEYWORDS.includes(k)), []);
});

test('an empty smart-line line name is one issue at the key, not two at the enclosing brace', () => {
  const { configFile } = writeConfig({ config: { upstreams: UP, smartLine: 'smart-line.json' }, extra: { 'smart-line.json': '{\n  "office": [],\n  "": ["10.0.0.0/8"]\n}\n' } });
  assert.deepEqual(
    issuesOf(configFile).map((i) => `${i.code} ${basename(i.file)}:${i.line}:${i.column} ${i.path}: ${i.message}`),
    ['LDNS_SCHEMA_SIZE smart-line.json:3:3 $[""]: property name "": expected a non-empty string'],
  );
});
