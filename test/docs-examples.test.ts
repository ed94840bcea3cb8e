// Every example in README.md and docs/**/*.md runs (CoreDNS's test/readme_test.go idea): each
// config shown goes through `linedns check` and is started, and each `$ dig` shown is run against
// a server started with its config, its output compared with what the doc prints. A doc example
// that has gone stale fails here instead of misleading a reader.
//
// The convention, one HTML comment (invisible when rendered) as the last non-blank line before a
// code block, fenced or indented:
//
//   <!-- example: NAME file: FILE -->   the block is FILE (linedns.json, records.json,
//                                        smart-line.json, a stage module *.js, or a zone file
//                                        *.zone) of example NAME;
//                                        the blocks of one NAME in one doc are one config directory
//   <!-- example: NAME with: PATH -->    also copies PATH (relative to the doc) into that directory
//   <!-- example: NAME warns: JSONPATH -->  `check` is expected to warn at JSONPATH (repeatable);
//                                        any other warning fails
//   <!-- example: NAME config: PATH -->  on a block of `$ dig` lines: run them against the config
//                                        at PATH (relative to the repository root) rather than
//                                        against example NAME's blocks
//   <!-- example: none REASON -->        not an example; the reason is required
//
// Every ```json block and every block with a `$ dig` line must carry a marker, so a new example
// cannot escape this test; a marker that precedes no block fails too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { parse as parseJsonc, type ParseError } from 'jsonc-parser';
import { loadConfig } from '../src/app/config.js';
import { silentLogger } from '../src/lib/logger.js';
import { LineDnsServer } from '../src/app/server.js';
import { findBinary } from './helpers/peers.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = new URL('../src/cli.js', import.meta.url).pathname;
const DIG = findBinary('dig');

const CONFIG_FILES = ['linedns.json', 'records.json', 'smart-line.json'];
const KEYS = ['file', 'with', 'warns', 'config'];

interface Marker {
  name: string;
  file: string | null;
  with: string[];
  warns: string[];
  config: string | null;
  reason: string;
}

interface Block {
  doc: string; // relative to ROOT
  line: number; // 1-based line of the block's first line, for messages
  lang: string; // fence info string; '' for indented blocks
  text: string;
  marker: Marker | null;
}

interface Parsed {
  blocks: Block[];
  problems: string[];
}

function docFiles(): string[] {
  const out = ['README.md'];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.md')) out.push(rel);
    }
  };
  walk('docs');
  return out;
}

const MARKER = /^<!--\s*example:\s*(.*?)\s*-->\s*$/;

function parseMarker(body: string, where: string, problems: string[]): Marker {
  const [name = '', ...rest] = body.split(/\s+/);
  const m: Marker = { name, file: null, with: [], warns: [], config: null, reason: '' };
  if (name === 'none') {
    m.reason = rest.join(' ');
    if (m.reason === '') problems.push(`${where}: "example: none" needs a reason`);
    return m;
  }
  if (name === '' || name.endsWith(':')) problems.push(`${where}: marker without an example name`);
  // `key: value` pairs; an unknown key is an error, so a misspelt one cannot be silently ignored.
  for (let i = 0; i < rest.length; i += 2) {
    const key = rest[i]!.replace(/:$/, '');
    const value = rest[i + 1];
    if (!rest[i]!.endsWith(':') || !KEYS.includes(key) || value === undefined) {
      problems.push(`${where}: cannot read "${rest.slice(i).join(' ')}"; expected ${KEYS.map((k) => `${k}: VALUE`).join(', ')}`);
      break;
    }
    if (key === 'file') m.file = value;
    else if (key === 'config') m.config = value;
    else if (key === 'with') m.with.push(value);
    else m.warns.push(value);
  }
  if (m.file !== null && !CONFIG_FILES.includes(m.file) && !/^[\w.-]+\.(m?js|zone)$/.test(m.file)) {
    problems.push(`${where}: file: ${m.file} is not one of ${CONFIG_FILES.join(', ')}, a stage module *.js or a zone file *.zone`);
  }
  return m;
}

/** Code blocks (fenced, and indented ones after a blank line) with the marker before each. */
function parseDoc(doc: string): Parsed {
  const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
  const blocks: Block[] = [];
  const problems: string[] = [];
  const usedMarkers = new Set<number>();
  const markerBefore = (start: number): Marker | null => {
    let j = start - 1;
    while (j >= 0 && lines[j]!.trim() === '') j--;
    const m = j >= 0 ? MARKER.exec(lines[j]!.trim()) : null;
    if (!m) return null;
    usedMarkers.add(j);
    return parseMarker(m[1]!, `${doc}:${j + 1}`, problems);
  };
  for (let i = 0; i < lines.length; i++) {
    const fence = /^\s*```\s*(\S*)/.exec(lines[i]!);
    if (fence) {
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
      blocks.push({ doc, line: start + 1, lang: fence[1]!, text: `${body.join('\n')}\n`, marker: markerBefore(start) });
      continue;
    }
    if (/^( {4}|\t)/.test(lines[i]!) && (i === 0 || lines[i - 1]!.trim() === '')) {
      const start = i;
      let end = i;
      for (; i < lines.length && (/^( {4}|\t)/.test(lines[i]!) || lines[i]!.trim() === ''); i++) if (lines[i]!.trim() !== '') end = i;
      const body = lines.slice(start, end + 1).map((l) => l.replace(/^( {4}|\t)/, ''));
      blocks.push({ doc, line: start + 1, lang: '', text: `${body.join('\n')}\n`, marker: markerBefore(start) });
      i = end;
    }
  }
  lines.forEach((l, j) => {
    if (/<!--\s*example:/.test(l) && !usedMarkers.has(j)) problems.push(`${doc}:${j + 1}: example marker not directly before a code block`);
  });
  return { blocks, problems };
}

const hasDig = (b: Block): boolean => /^\$ dig\b/m.test(b.text);

const parsed = docFiles().map(parseDoc);
const blocks = parsed.flatMap((p) => p.blocks);

test('docs examples: every ```json block and every block of `$ dig` lines carries an example marker', () => {
  const problems = parsed.flatMap((p) => p.problems);
  for (const b of blocks) {
    const where = `${b.doc}:${b.line}`;
    if ((b.lang === 'json' || b.lang === 'jsonc') && b.marker === null) {
      problems.push(`${where}: unmarked json block; add <!-- example: NAME file: FILE --> (or <!-- example: none REASON -->)`);
    }
    if (hasDig(b) && b.marker === null) problems.push(`${where}: unmarked \`$ dig\` block; add <!-- example: NAME config: PATH -->`);
    if (b.marker && b.marker.name !== 'none' && b.marker.file === null && !hasDig(b)) {
      problems.push(`${where}: example ${b.marker.name} names no file: and shows no \`$ dig\` line`);
    }
  }
  assert.deepEqual(problems, []);
  // The scan itself must find what the docs are known to hold, or a parser bug would pass vacuously.
  assert.ok(blocks.some((b) => b.doc === 'README.md' && hasDig(b)), "the README's dig example was not found");
  assert.ok(blocks.some((b) => b.marker?.file === 'smart-line.json'), 'no smart-line.json example found');
});

const digBlocks = blocks.filter((b) => hasDig(b) && b.marker !== null && b.marker.name !== 'none');

interface Example {
  doc: string;
  name: string;
  blocks: Block[];
}

/** Config examples: the blocks with a file:, grouped by doc and name. */
function examples(): Example[] {
  const byKey = new Map<string, Example>();
  for (const b of blocks) {
    if (!b.marker || b.marker.name === 'none' || b.marker.file === null) continue;
    const key = `${b.doc}#${b.marker.name}`;
    const e = byKey.get(key) ?? { doc: b.doc, name: b.marker.name, blocks: [] };
    e.blocks.push(b);
    byKey.set(key, e);
  }
  return [...byKey.values()];
}

/**
 * Writes example `e` to a temp dir and returns its linedns.json. What is added to the doc's
 * blocks, so that fragments check and run on loopback: a linedns.json ({} when the example shows
 * none) gets `upstreams: [loopback]` when it names none, and `records` / `smartLine` naming the
 * example's records.json / smart-line.json when it shows them but does not name them.
 */
function writeExample(e: Example, upstream: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'linedns-docs-'));
  const files = new Map<string, string>();
  for (const b of e.blocks) {
    assert.ok(!files.has(b.marker!.file!), `${e.doc}: example ${e.name} shows ${b.marker!.file} twice`);
    files.set(b.marker!.file!, b.text);
    for (const w of b.marker!.with) copyFileSync(join(ROOT, dirname(e.doc), w), join(dir, basename(w)));
  }
  for (const [name, text] of files) if (name !== 'linedns.json') writeFileSync(join(dir, name), text);
  const file = join(dir, 'linedns.json');
  const shown = files.get('linedns.json');
  const errors: ParseError[] = [];
  const parsedConfig: unknown = shown === undefined ? {} : parseJsonc(shown, errors);
  if (errors.length > 0 || typeof parsedConfig !== 'object' || parsedConfig === null || Array.isArray(parsedConfig)) {
    // Not an object we can add to: written as shown, so check reports it with its line and column.
    writeFileSync(file, shown ?? '');
    return file;
  }
  const config = parsedConfig as Record<string, unknown>;
  config.upstreams ??= [upstream];
  if (files.has('records.json')) config.records ??= 'records.json';
  if (files.has('smart-line.json')) config.smartLine ??= 'smart-line.json';
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** Starts linedns in-process on 127.0.0.1 port 0 with `file`, its upstreams replaced by `upstream`. */
async function serve(file: string, upstream: string): Promise<LineDnsServer> {
  const { config } = loadConfig(file, { listen: ['127.0.0.1:0'], upstreams: [upstream] });
  return LineDnsServer.start(config, { logger: silentLogger() });
}

/** `linedns check FILE` as a user runs it; asserts it is valid with exactly the warnings `warns` names. */
function check(file: string, warns: string[], what: string): void {
  const r = spawnSync(process.execPath, [CLI, 'check', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${what}: linedns check failed:\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /: valid: /, what);
  const warnings = r.stderr.split('\n').filter((l) => l.includes(': warning: '));
  const unexpected = warnings.filter((w) => !warns.some((p) => w.includes(`: warning: ${p}: `)));
  assert.deepEqual(unexpected, [], `${what}: warnings the doc does not mention (mark them with warns: JSONPATH)`);
  for (const p of warns) assert.ok(warnings.some((w) => w.includes(`: warning: ${p}: `)), `${what}: the doc says it warns at ${p}, but check did not`);
}

test('docs examples: every config shown passes `linedns check` and starts', async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  t.after(() => up.close());
  const all = examples();
  assert.ok(all.length > 0, 'no config examples found');
  for (const e of all) {
    await t.test(`${e.doc}: ${e.name} (${e.blocks.map((b) => b.marker!.file).join(', ')})`, async () => {
      const file = writeExample(e, up.address);
      check(file, e.blocks.flatMap((b) => b.marker!.warns), `${e.doc}: ${e.name}`);
      // Starting it also imports its stage modules, which check only looks for.
      const server = await serve(file, up.address);
      await server.close();
    });
  }
  // The configs that dig examples run against (the shipped config/ for the README), as they are.
  for (const path of new Set(digBlocks.flatMap((b) => (b.marker!.config === null ? [] : [b.marker!.config])))) {
    await t.test(`${path} (dig examples run against it)`, () => {
      const warns = digBlocks.filter((b) => b.marker!.config === path).flatMap((b) => b.marker!.warns);
      check(join(ROOT, path), warns, path);
    });
  }
  // A stage module shown in a doc that also links it as docs/examples/FILE must be that file
  // (the test above runs the doc's copy, test/cli.test.ts the file's), bar the file's header
  // comment, which the doc's prose replaces.
  for (const b of blocks) {
    const f = b.marker?.file;
    if (!f || !f.endsWith('js')) continue;
    const linked = join(ROOT, dirname(b.doc), 'examples', f);
    if (!existsSync(linked)) continue;
    const code = readFileSync(linked, 'utf8').replace(/^(\/\/.*\n|\s*\n)*/, '');
    assert.equal(b.text, code, `${b.doc}:${b.line} differs from ${relative(ROOT, linked)}`);
  }
});

interface DigStep {
  command: string; // as the doc shows it
  args: string[];
  filter: 'short' | 'status';
  expected: string[];
}

/** `$ dig ...` lines and the output lines under each. */
function digSteps(b: Block): DigStep[] {
  const steps: DigStep[] = [];
  for (const line of b.text.split('\n')) {
    if (line.startsWith('$ ')) {
      const command = line.slice(2).replace(/\s+#.*$/, '').trim();
      const [dig = '', ...pipes] = command.split('|').map((s) => s.trim());
      const args = dig.split(/\s+/).slice(1);
      assert.equal(dig.split(/\s+/)[0], 'dig', `${b.doc}:${b.line}: only dig commands are run: ${command}`);
      let filter: DigStep['filter'];
      if (pipes.length === 0 && args.includes('+short')) filter = 'short';
      else if (pipes.length === 1 && pipes[0] === 'grep status') filter = 'status';
      else assert.fail(`${b.doc}:${b.line}: the test compares "dig ... +short" and "dig ... | grep status" only: ${command}`);
      steps.push({ command, args, filter, expected: [] });
    } else if (line.trim() !== '') {
      const last = steps.at(-1);
      assert.ok(last, `${b.doc}:${b.line}: output before any $ dig line: ${line}`);
      last.expected.push(line.trim());
    }
  }
  return steps;
}

function run(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    // Async: the server answering is in this process, so a synchronous spawn would starve it.
    execFile(bin, args, { timeout: 10_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

test('docs examples: every `$ dig` shown gives the output shown', { skip: DIG === null ? 'dig not installed (.ci/run installs dnsutils)' : false }, async (t) => {
  const up = await TestUpstream.start(simpleHandler());
  t.after(() => up.close());
  assert.ok(digBlocks.length > 0, 'no dig examples found');
  for (const b of digBlocks) {
    const m = b.marker!;
    await t.test(`${b.doc}:${b.line}: ${m.name}`, async () => {
      let file: string;
      if (m.config !== null) file = join(ROOT, m.config);
      else {
        const e = examples().find((x) => x.doc === b.doc && x.name === m.name);
        assert.ok(e, `${b.doc}:${b.line}: no config: and no config example named ${m.name} in ${b.doc}`);
        file = writeExample(e, up.address);
      }
      const server = await serve(file, up.address);
      try {
        const steps = digSteps(b);
        assert.ok(steps.length > 0);
        for (const s of steps) {
          // The doc shows the documented listen address; the server here has a port of its own.
          // Anything else (another server, no -p) would query off loopback or the wrong server.
          const p = s.args.indexOf('-p');
          assert.ok(s.args.includes('@127.0.0.1') && p >= 0, `${s.command}: expected @127.0.0.1 -p PORT`);
          const args = [...s.args];
          args[p + 1] = String(server.port);
          // One try, bounded: a missing answer fails in seconds instead of dig's 15.
          const out = await run(DIG!, [...args, '+time=2', '+tries=1']);
          if (s.filter === 'short') {
            const got = out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
            assert.deepEqual(got, s.expected, s.command);
          } else {
            const status = (text: string): string | undefined => /->>HEADER<<-.*status: (\w+)/.exec(text)?.[1];
            assert.equal(s.expected.length, 1, `${s.command}: expected one header line in the doc`);
            assert.ok(status(s.expected[0]!), `${s.command}: no status in the doc's line`);
            assert.equal(status(out), status(s.expected[0]!), `${s.command}\n${out}`);
          }
        }
      } finally {
        await server.close();
      }
    });
  }
});
