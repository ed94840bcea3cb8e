// `linedns serve --workers 2` with the admin endpoint: the primary's /metrics is the sum of both
// workers' (each has its own cache, so two upstream misses prove two workers), and a reload applies in both.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { answerData, buildQuery, decode, query, tcpExchange } from './helpers/client.js';
import { writeConfig } from './helpers/server.js';
import { portOf, serve, until, type Served } from './helpers/serve.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import { http, sample } from './helpers/http.js';
import { supportsReusePort } from '../src/app/workers.js';

const T = { timeout: 60_000 };


/** The admin port the primary logged. */
function adminPort(s: Served): number {
  const line = s.lines.find((l) => l.includes('admin endpoint listening'));
  assert.ok(line, `the primary logs its admin address:\n${s.lines.join('\n')}`);
  const url = (JSON.parse(line) as { admin: string }).admin;
  return Number(url.slice(url.lastIndexOf(':') + 1));
}

const logged = (s: Served, msg: string): number => s.lines.filter((l) => l.includes(`"msg":"${msg}"`)).length;

test('--workers 2 with admin: the primary sums both workers\' metrics and cache stats, is ready when both are, and a reload applies in both', T, async () => {
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({
    config: { upstreams: [up.address], listen: ['127.0.0.1:0'], watch: false, admin: '127.0.0.1:0' },
    records: [{ name: 'w.test', type: 'A', rdata: '192.0.2.44' }],
  });
  const s = await serve(['--config', files.configFile, '--workers', '2']);
  try {
    const port = portOf(s);
    const admin = adminPort(s);
    assert.equal(logged(s, 'worker ready'), 2);
    assert.deepEqual(await http(admin, '/readyz'), { status: 200, body: 'ok\n' });

    // One query per TCP connection: the cluster hands connections to the workers in turn. Each
    // worker has its own cache, so the upstream sees one miss per worker that answered: two
    // requests prove both workers did (bounded: at most 20 connections).
    let tcp = 0;
    while (up.requests.length < 2 && tcp < 20) {
      const [reply] = await tcpExchange(port, [buildQuery({ name: 'm.test' })]);
      assert.deepEqual(answerData(decode(reply!)), ['203.0.113.1']);
      tcp++;
    }
    assert.equal(up.requests.length, 2, 'both workers answered');

    const m = (await http(admin, '/metrics')).body;
    const r = (labels: string): number | undefined => sample(m, `linedns_replies_total{${labels}}`);
    assert.equal(r('transport="tcp",type="A",rcode="NOERROR",stage="forward"'), 2, m);
    assert.equal(r('transport="tcp",type="A",rcode="NOERROR",stage="cache"') ?? 0, tcp - 2);
    assert.equal(sample(m, 'linedns_tcp_queries_total'), tcp);
    assert.equal(sample(m, 'linedns_udp_queries_total'), 0);
    assert.equal(sample(m, 'linedns_cache_misses_total'), 2);
    assert.equal(sample(m, 'linedns_cache_entries'), 2, 'one entry in each worker\'s cache');
    assert.equal(sample(m, 'linedns_reply_duration_seconds_count{transport="tcp"}'), tcp);
    assert.equal(sample(m, 'linedns_reply_duration_seconds_bucket{transport="tcp",le="+Inf"}'), tcp);
    assert.equal(sample(m, 'linedns_upstream_queries_total{upstream="' + up.address + '",protocol="udp",route="."}'), 2);
    // The primary's own: the config, reloads, readiness; each family once.
    assert.equal(sample(m, 'linedns_ready'), 1);
    assert.equal(sample(m, 'linedns_workers'), 2);
    assert.equal(sample(m, 'linedns_workers_ready'), 2);
    assert.equal(sample(m, 'linedns_config_reloads_total'), 0);
    const hash = m.match(/^linedns_config_info\{hash="([0-9a-f]{12})"\} 1$/m)?.[1];
    assert.ok(hash !== undefined, 'config_info shown');
    for (const family of ['linedns_config_info', 'linedns_config_reloads_total', 'linedns_replies_total', 'process_cpu_seconds_total']) {
      assert.equal(m.split('\n').filter((l) => l === `# TYPE ${family} ${family.endsWith('info') ? 'gauge' : 'counter'}`).length, 1, `${family} once`);
    }

    const caches = JSON.parse((await http(admin, '/cache')).body) as { cache: { entries: number; misses: number } };
    assert.equal(caches.cache.entries, 2);
    assert.equal(caches.cache.misses, 2);
    const flushed = JSON.parse((await http(admin, '/cache/flush', { method: 'POST' })).body) as { flushed: { cache: number } };
    assert.equal(flushed.flushed.cache, 2, 'the flush reached both workers');
    assert.equal(sample((await http(admin, '/metrics')).body, 'linedns_cache_entries'), 0);

    // UDP: the shared socket (Node 20) or each worker's own (reusePort); whichever answers, counted once.
    for (let i = 0; i < 3; i++) assert.deepEqual(answerData(await query(port, { name: 'w.test' })), ['192.0.2.44']);
    const u = (await http(admin, '/metrics')).body;
    assert.equal(sample(u, 'linedns_udp_queries_total'), 3);
    assert.equal(sample(u, 'linedns_reply_duration_seconds_count{transport="udp"}'), 3);

    const e = JSON.parse((await http(admin, '/explain?name=w.test&client=127.0.0.1')).body) as { answeredBy: string };
    assert.equal(e.answeredBy, 'records', '/explain runs in the primary from its config');

    // A reload: new records in both workers; counted once, by the primary, with the new hash.
    writeFileSync(join(files.dir, 'records.json'), JSON.stringify([{ name: 'w.test', type: 'A', rdata: '192.0.2.45' }]));
    s.child.kill('SIGHUP');
    await until(async () => logged(s, 'configuration reloaded') === 2, 10_000);
    for (let i = 0; i < 6; i++) {
      const [reply] = await tcpExchange(port, [buildQuery({ name: 'w.test' })]);
      assert.deepEqual(answerData(decode(reply!)), ['192.0.2.45'], 'every worker answers from the new records');
    }
    const after = (await http(admin, '/metrics')).body;
    assert.equal(sample(after, 'linedns_config_reloads_total'), 1);
    assert.equal(sample(after, `linedns_config_info{hash="${hash}"}`), undefined);
    assert.match(after, /^linedns_config_info\{hash="[0-9a-f]{12}"\} 1$/m);

    // Refused: counted by the primary; the workers keep serving.
    writeFileSync(join(files.dir, 'records.json'), '[{ "name": "w.test", "type": "A", "rdata": "bad" }]');
    s.child.kill('SIGHUP');
    await until(async () => sample((await http(admin, '/metrics')).body, 'linedns_config_reload_failures_total') === 1, 10_000);

    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});

test('reusePort is used from Node 22.12 and 23.1 on; --workers auto is accepted', async () => {
  assert.equal(supportsReusePort('20.20.0'), false);
  assert.equal(supportsReusePort('22.11.0'), false);
  assert.equal(supportsReusePort('22.12.0'), true);
  assert.equal(supportsReusePort('23.0.0'), false);
  assert.equal(supportsReusePort('23.1.0'), true);
  assert.equal(supportsReusePort('24.0.0'), true);
  const up = await TestUpstream.start(simpleHandler());
  const files = writeConfig({ config: { upstreams: [up.address], listen: ['127.0.0.1:0'], watch: false } });
  const s = await serve(['--config', files.configFile, '--workers', 'auto']);
  try {
    assert.deepEqual(answerData(await query(portOf(s), { name: 'a.test' })), ['203.0.113.1']);
    s.child.kill('SIGTERM');
    assert.equal(await s.exit, 0);
  } finally {
    s.child.kill('SIGKILL');
    await up.close();
  }
});
