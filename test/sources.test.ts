// URL sources: records, zones, smartLine and rewriteFrom from a repository on loopback: 200 with
// an ETag, 304, 500, a bad document, an outage at start (the last good copy on disk), no copy.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadForStart } from '../src/app/sources.js';
import { LineDnsServer } from '../src/app/server.js';
import { ConfigError } from '../src/config/load.js';
import { Metrics } from '../src/lib/metrics.js';
import { answerData, query } from './helpers/client.js';
import { writeConfig } from './helpers/server.js';
import { Repository } from './helpers/repository.js';
import { makeCert, NO_OPENSSL } from './helpers/certs.js';
import { configFiles } from '../src/app/watch.js';
import { execFile } from 'node:child_process';
import { portOf, serve as serveCli, until } from './helpers/serve.js';

const CLI = new URL('../src/cli.js', import.meta.url).pathname;

function cli(args: string[], env: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, text: stdout + stderr });
    });
  });
}

type Line = { msg: string; errors?: string[]; source?: string };
function capturingLogger(): { logger: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  return { logger, lines };
}

const records = (ip: string): string => JSON.stringify([{ name: 'r.test', type: 'A', rdata: ip }]);

interface Rig {
  repo: Repository;
  configFile: string;
  stateDir: string;
}

/** linedns.json naming the repository's records.json; `extra` keys merged in. */
function rig(repo: Repository, extra: Record<string, unknown> = {}, stateDir = mkdtempSync(join(tmpdir(), 'linedns-state-'))): Rig {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], records: repo.url('/records.json'), sources: { dir: stateDir, interval: 3600, timeout: 5 }, ...extra } });
  return { repo, configFile, stateDir };
}

async function serve(r: Rig, logger: pino.Logger): Promise<{ server: LineDnsServer; metrics: Metrics }> {
  const metrics = new Metrics();
  const { config, sources } = await loadForStart(r.configFile, {}, logger, metrics);
  const server = await LineDnsServer.start(config, { logger, metrics, sources });
  return { server, metrics };
}

/** What the poller does each interval: fetch everything, reload when something is new. */
async function poll(server: LineDnsServer): Promise<boolean | null> {
  return (await server.sources.fetchAll()) ? server.reloadFromFile() : null;
}

async function answer(server: LineDnsServer): Promise<unknown[]> {
  return answerData(await query(server.port, { name: 'r.test' }));
}

describe('URL sources', { timeout: 60_000 }, () => {
  test('200 with an ETag, 304, a new document, 500, a bad document: only good documents are applied, and kept on disk', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.1'));
    const r = rig(repo);
    const { logger, lines } = capturingLogger();
    const { server, metrics } = await serve(r, logger);
    try {
      assert.deepEqual(await answer(server), ['192.0.2.1']);
      assert.equal(repo.requests[0]!.headers['if-none-match'], undefined);
      assert.equal(readdirSync(r.stateDir).filter((f) => f.endsWith('.body')).length, 1, 'the last good copy is saved');

      // Unchanged: a conditional request, 304, no reload.
      assert.equal(await poll(server), null);
      assert.equal(repo.requests.at(-1)!.headers['if-none-match'], '"v1"');
      assert.equal(repo.requests.at(-1)!.status, 304);
      assert.equal(metrics.get('config_reloads_total'), 0);

      // A new document: applied through the reload path, saved.
      repo.put('/records.json', records('192.0.2.2'));
      assert.equal(await poll(server), true);
      assert.deepEqual(await answer(server), ['192.0.2.2']);
      const body = readdirSync(r.stateDir).find((f) => f.endsWith('.body'))!;
      assert.equal(readFileSync(join(r.stateDir, body), 'utf8'), records('192.0.2.2'));

      // 500: nothing changes, the failure is counted and logged once.
      repo.failWith = 500;
      assert.equal(await poll(server), null);
      assert.equal(await poll(server), null);
      repo.failWith = null;
      assert.equal(metrics.get('source_fetch_failures_total'), 2);
      assert.equal(lines.filter((l) => l.msg.startsWith('source: fetch failed')).length, 1, 'the same failure again is not logged again');
      assert.deepEqual(await answer(server), ['192.0.2.2']);

      // A bad document: refused like a bad file, at URL:line:col; the last good copy stays.
      repo.put('/records.json', '[{ "name": "r.test", "type": "A", "rdata": "not-an-address" }]');
      assert.equal(await poll(server), false);
      assert.equal(metrics.get('config_reload_failures_total'), 1);
      assert.deepEqual(await answer(server), ['192.0.2.2']);
      const failure = lines.find((l) => l.msg.startsWith('reload failed') && l.errors)!;
      assert.ok(failure.errors!.some((e) => e.startsWith(`${repo.url('/records.json')}:1:`)), failure.errors!.join('\n'));
      assert.equal(readFileSync(join(r.stateDir, body), 'utf8'), records('192.0.2.2'));
      // Asked again, the repository says 304 for the refused document: no reload, no new error.
      assert.equal(await poll(server), null);
      // A SIGHUP meanwhile loads the last good copy, not the refused document.
      assert.equal(await server.reloadFromFile(), true);
      assert.deepEqual(await answer(server), ['192.0.2.2']);
      // Fixed in the repository: applied.
      repo.put('/records.json', records('192.0.2.3'));
      assert.equal(await poll(server), true);
      assert.deepEqual(await answer(server), ['192.0.2.3']);
    } finally {
      await server.close();
      await repo.close();
    }
  });

  test('the repository down at start: starts from the last good copy; with none, refuses with a clear message', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.7'));
    const r = rig(repo);
    const first = await serve(r, capturingLogger().logger);
    await first.server.close();
    await repo.down();
    try {
      const { logger, lines } = capturingLogger();
      const { server, metrics } = await serve(r, logger);
      try {
        assert.deepEqual(await answer(server), ['192.0.2.7'], 'served from the copy on disk');
        assert.equal(metrics.get('source_fetch_failures_total'), 1);
        const warned = lines.find((l) => l.msg === 'source: fetch failed; keeping the last good copy');
        assert.equal(warned?.source, repo.url('/records.json'));
        // Back up with a new document: the next poll applies it.
        await repo.up();
        repo.put('/records.json', records('192.0.2.8'));
        assert.equal(await poll(server), true);
        assert.deepEqual(await answer(server), ['192.0.2.8']);
      } finally {
        await server.close();
      }
      // Another repository, never reached, and another state directory: no copy to start from.
      const gone = await Repository.start();
      await gone.down();
      const bare = rig(gone, {}, mkdtempSync(join(tmpdir(), 'linedns-state-')));
      await assert.rejects(loadForStart(bare.configFile, {}, capturingLogger().logger, new Metrics()), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const issue = err.issues.find((i) => i.code === 'LDNS_FILE_UNREADABLE')!;
        assert.match(issue.message, /ECONNREFUSED.*, and no last good copy in /);
        assert.match(issue.file, /linedns\.json$/, 'said at the key that names the URL');
        return true;
      });
    } finally {
      await repo.close().catch(() => undefined);
    }
  });

  test('a bad document at start with a good copy on disk: starts from the copy, logged', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.9'));
    const r = rig(repo);
    await (await serve(r, capturingLogger().logger)).server.close();
    repo.put('/records.json', '[{ "name": "r.test", "type": "A", "rdata": "192.0.2.10" },]');
    const { logger, lines } = capturingLogger();
    const { server } = await serve(r, logger);
    try {
      assert.deepEqual(await answer(server), ['192.0.2.9']);
      assert.ok(lines.some((l) => l.msg === 'source: the documents fetched at start were refused; starting from the last good copies'));
    } finally {
      await server.close();
      await repo.close();
    }
  });

  test('zones, smartLine and rewriteFrom from URLs; a zone error is reported at URL:line:col', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', JSON.stringify([{ name: 'in.test', type: 'A', rdata: '10.0.0.1', labels: ['office'] }]));
    repo.put('/lines.json', JSON.stringify({ office: ['127.0.0.0/8'] }));
    repo.put('/rewrite.json', JSON.stringify({ 'alias.test': 'www.z.test' }));
    repo.put('/z.zone', '$ORIGIN z.test.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\nwww 300 IN A 192.0.2.50\n');
    const r = rig(repo, { smartLine: repo.url('/lines.json'), zones: [repo.url('/z.zone')], rewriteFrom: repo.url('/rewrite.json') });
    const { logger, lines } = capturingLogger();
    const { server } = await serve(r, logger);
    try {
      assert.deepEqual(server.config.sourceUrls.length, 4);
      assert.deepEqual(configFiles(server.config), [r.configFile], 'URLs are polled, not watched');
      assert.deepEqual(answerData(await query(server.port, { name: 'www.z.test' })), ['192.0.2.50']);
      assert.deepEqual(answerData(await query(server.port, { name: 'in.test' })), ['10.0.0.1']);
      assert.deepEqual(answerData(await query(server.port, { name: 'alias.test' })), ['192.0.2.50']);
      repo.put('/z.zone', '$ORIGIN z.test.\n@ 300 IN SOA ns hostmaster 1 3600 600 86400 300\nwww 300 IN A 192.0.2.500\n');
      assert.equal(await poll(server), false);
      const failure = lines.find((l) => l.msg.startsWith('reload failed') && l.errors)!;
      assert.ok(failure.errors!.some((e) => e.startsWith(`${repo.url('/z.zone')}:3:`)), failure.errors!.join('\n'));
      assert.deepEqual(answerData(await query(server.port, { name: 'www.z.test' })), ['192.0.2.50']);
    } finally {
      await server.close();
      await repo.close();
    }
  });

  test('polling on its own: a new document is applied within a few intervals (interval 1 s, jitter 0.5)', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.20'));
    const r = rig(repo, { sources: { dir: mkdtempSync(join(tmpdir(), 'linedns-state-')), interval: 1, jitter: 0.5 } });
    const { server } = await serve(r, capturingLogger().logger);
    try {
      repo.put('/records.json', records('192.0.2.21'));
      let got: unknown[] = [];
      // Bounded: 100 tries, 100 ms apart.
      for (let i = 0; i < 100; i++) {
        got = await answer(server);
        if (got[0] === '192.0.2.21') break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.deepEqual(got, ['192.0.2.21']);
      assert.ok(repo.requests.length >= 2);
    } finally {
      await server.close();
      await repo.close();
    }
  });

  test('a body larger than sources.maxSize is a fetch failure', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.30'));
    const r = rig(repo);
    const { logger, lines } = capturingLogger();
    const { server, metrics } = await serve(r, logger);
    try {
      repo.put('/records.json', JSON.stringify([{ name: 'r.test', type: 'TXT', rdata: 'x'.repeat(200), ttl: 1 }]).padEnd(2048, ' '));
      // As a reload that read "maxSize": 1024 from linedns.json would configure it.
      server.sources.configure(server.config.sourceUrls, { ...server.config.sources, maxBytes: 1024 });
      assert.equal(await poll(server), null);
      assert.equal(metrics.get('source_fetch_failures_total'), 1);
      assert.match(lines.find((l) => l.msg.startsWith('source: fetch failed'))!.msg, /keeping the last good copy/);
      assert.deepEqual(await answer(server), ['192.0.2.30']);
    } finally {
      await server.close();
      await repo.close();
    }
  });

  test('linedns check fetches URL sources and validates them; a repository that is down is an error there', async () => {
    const repo = await Repository.start();
    try {
      repo.put('/records.json', records('192.0.2.40'));
      const r = rig(repo);
      const ok = await cli(['check', r.configFile]);
      assert.equal(ok.status, 0, ok.text);
      assert.match(ok.text, /valid: 1 records/);
      assert.deepEqual(readdirSync(r.stateDir), [], 'check saves nothing');
      repo.put('/records.json', '[{ "name": "r.test", "type": "A", "rdata": "192.0.2.300" }]');
      const bad = await cli(['check', r.configFile]);
      assert.equal(bad.status, 1);
      assert.match(bad.text, new RegExp(`${repo.url('/records.json').replace(/[.]/g, '\\.')}:1:\\d+: error: \\$\\[0\\]\\.rdata`));
      await repo.down();
      const down = await cli(['check', r.configFile]);
      assert.equal(down.status, 1);
      assert.match(down.text, /LDNS_FILE_UNREADABLE/);
    } finally {
      await repo.close().catch(() => undefined);
    }
  });

  test('a repository that accepts and never answers: the fetch times out (sources.timeout), counted, the copy kept', async () => {
    const repo = await Repository.start();
    try {
      repo.put('/records.json', records('192.0.2.60'));
      const r = rig(repo, { sources: { dir: mkdtempSync(join(tmpdir(), 'linedns-state-')), interval: 3600, timeout: 1 } });
      const { logger, lines } = capturingLogger();
      const { server, metrics } = await serve(r, logger);
      try {
        repo.hang = true;
        assert.equal(await poll(server), null);
        assert.equal(metrics.get('source_fetch_failures_total'), 1);
        const warned = lines.find((l) => l.msg.startsWith('source: fetch failed')) as (Line & { reason?: string }) | undefined;
        assert.equal(warned?.reason, 'no answer within 1000 ms');
        assert.deepEqual(await answer(server), ['192.0.2.60']);
      } finally {
        await server.close();
      }
    } finally {
      await repo.close();
    }
  });

  test('--workers: the primary fetches and polls, and counts its failures in its /metrics; a new document reaches every worker', async () => {
    const repo = await Repository.start();
    repo.put('/records.json', records('192.0.2.70'));
    const r = rig(repo, { sources: { dir: mkdtempSync(join(tmpdir(), 'linedns-state-')), interval: 1, jitter: 0 }, admin: '127.0.0.1:0', watch: false });
    // A first start leaves the last good copy; then the repository goes down.
    await (await serve(r, capturingLogger().logger)).server.close();
    await repo.down();
    const s = await serveCli(['--config', r.configFile, '--workers', '2']);
    try {
      const port = portOf(s);
      const log = (): Array<{ msg: string; admin?: string }> => s.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
      assert.deepEqual(answerData(await query(port, { name: 'r.test' })), ['192.0.2.70'], 'served from the copy');
      const admin = log().find((l) => l.msg === 'admin endpoint listening')!.admin!;
      const failures = async (): Promise<number> => Number(/linedns_source_fetch_failures_total (\d+)/.exec(await (await fetch(`${admin}/metrics`)).text())?.[1] ?? -1);
      assert.ok((await failures()) >= 1, 'the failure at start, counted by the primary, shows in its /metrics');
      await repo.up();
      repo.put('/records.json', records('192.0.2.71'));
      await until(async () => log().some((l) => l.msg === 'configuration reloaded; sent to the workers'), 10_000);
      await until(async () => log().filter((l) => l.msg === 'configuration reloaded').length === 2, 10_000);
      for (let i = 0; i < 6; i++) assert.deepEqual(answerData(await query(port, { name: 'r.test' })), ['192.0.2.71']);
      s.child.kill('SIGTERM');
      assert.equal(await s.exit, 0);
    } finally {
      s.child.kill('SIGKILL');
      await repo.close().catch(() => undefined);
    }
  });

  test('https: a repository whose certificate Node trusts (a public CA, or NODE_EXTRA_CA_CERTS for a private one) is fetched as http is; an untrusted one, or a redirect to http, is a fetch failure', { skip: NO_OPENSSL }, async () => {
    const cert = makeCert('127.0.0.1', 'IP:127.0.0.1');
    const repo = await Repository.start(0, { key: cert.key, cert: cert.cert });
    repo.put('/records.json', records('192.0.2.9'));
    const r = rig(repo);
    try {
      // Not trusted, and no copy on disk yet: serve refuses to start and says why.
      const refused = await cli(['serve', '--config', r.configFile]);
      assert.equal(refused.status, 1, refused.text);
      assert.match(refused.text, /certificate/i);
      // A private CA given to Node the documented way.
      const s = await serveCli(['--config', r.configFile], { NODE_EXTRA_CA_CERTS: cert.caFile });
      try {
        assert.deepEqual(answerData(await query(portOf(s), { name: 'r.test' })), ['192.0.2.9']);
        assert.equal(repo.requests.filter((q) => q.status === 200).length, 1);
      } finally {
        s.child.kill('SIGTERM');
        await s.exit;
      }
      // Redirected to plain http: refused, whatever the http side serves.
      const plain = await Repository.start();
      plain.put('/records.json', records('203.0.113.66'));
      repo.redirectTo = plain.url('/records.json');
      try {
        const checked = await cli(['check', '--config', r.configFile], { NODE_EXTRA_CA_CERTS: cert.caFile });
        assert.equal(checked.status, 1, checked.text);
        assert.match(checked.text, /redirected from https to http:\/\/127\.0\.0\.1:\d+\/records\.json: refused/);
      } finally {
        await plain.close();
      }
    } finally {
      await repo.close();
    }
  });
});
