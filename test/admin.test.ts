// The admin endpoint on real loopback sockets: metric names and values after known traffic, the
// allow list (403), /readyz following forward's upstream health, /explain, cache stats and flushes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../src/app/config.js';
import { configHash } from '../src/app/server.js';
import { ConfigError } from '../src/config/load.js';
import { buildQuery, query, tcpExchange, udpExchange } from './helpers/client.js';
import { bounded, startLineDns, writeConfig, type Running } from './helpers/server.js';
import { simpleHandler, TestUpstream } from './helpers/upstream.js';
import { http, sample } from './helpers/http.js';
import { pino } from 'pino';
import { SocketErrorLog } from '../src/lib/net/listen.js';

const T = { timeout: 30_000 };


async function withAdmin(config: Record<string, unknown>, body: (ld: Running, up: TestUpstream, admin: number) => Promise<void>, records?: unknown[]): Promise<void> {
  const up = await TestUpstream.start(simpleHandler());
  try {
    const ld = await startLineDns({ config: { upstreams: [up.address], answerMemo: false, forward: { timeout: 100, deadline: 400 }, admin: '127.0.0.1:0', ...config }, records });
    try {
      assert.ok(ld.server.admin, 'the admin endpoint is started');
      await body(ld, up, ld.server.admin.address.port);
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  } finally {
    await bounded(up.close(), 'the upstream');
  }
}

function rewriteConfig(ld: Running, change: (c: Record<string, unknown>) => void): void {
  const c = JSON.parse(readFileSync(ld.configFile, 'utf8')) as Record<string, unknown>;
  change(c);
  writeFileSync(ld.configFile, JSON.stringify(c, null, 2));
}

test('admin: /metrics shows every counter with the linedns_ prefix, the config and the process', T, async () => {
  await withAdmin({}, async (ld, _up, port) => {
    for (let i = 0; i < 2; i++) assert.equal((await query(ld.port, { name: 'a.test' })).rcode, 'NOERROR');
    const r = await http(port, '/metrics');
    assert.equal(r.status, 200);
    const m = r.body;
    assert.equal(sample(m, 'linedns_udp_queries_total'), 2);
    assert.equal(sample(m, 'linedns_cache_misses_total'), 1);
    assert.equal(sample(m, 'linedns_cache_hits_total'), 1);
    assert.equal(sample(m, 'linedns_cache_entries'), 1);
    assert.equal(sample(m, 'linedns_forward_queries_total'), 1);
    assert.match(m, /# TYPE linedns_udp_queries_total counter/);
    assert.match(m, /# TYPE linedns_cache_entries gauge/);
    assert.equal(sample(m, 'linedns_config_reloads_total'), 0);
    assert.equal(sample(m, 'linedns_config_reload_failures_total'), 0);
    assert.equal(sample(m, 'linedns_ready'), 1);
    const hash = configHash(ld.server.config);
    assert.match(hash, /^[0-9a-f]{12}$/);
    assert.equal(sample(m, `linedns_config_info{hash="${hash}"}`), 1);
    assert.ok(Math.abs(sample(m, 'linedns_config_loaded_timestamp_seconds')! - Date.now() / 1000) < 60);
    assert.ok(sample(m, 'process_cpu_seconds_total') !== undefined, 'process metrics are there');
    // forward's per-upstream metrics (Stage.metrics).
    const u = `upstream="127.0.0.1:${_up.port}",protocol="udp",route="."`;
    assert.equal(sample(m, `linedns_upstream_queries_total{${u}}`), 1);
    assert.equal(sample(m, `linedns_upstream_answers_total{${u}}`), 1);
    assert.equal(sample(m, `linedns_upstream_failures_total{${u}}`), 0);
    assert.ok(sample(m, `linedns_upstream_answer_seconds_total{${u}}`)! > 0);
    assert.equal(sample(m, `linedns_upstream_up{${u}}`), 1);
    // Every counter of lib/metrics is exported.
    for (const name of Object.keys(ld.server.metrics.snapshot())) assert.ok(m.includes(`\nlinedns_${name} `), `linedns_${name} exported`);

    // A reload that changes the config: counted, and the hash follows.
    rewriteConfig(ld, (c) => (c.maxUdpSize = 1400));
    assert.equal(await ld.server.reloadFromFile(), true);
    writeFileSync(ld.configFile, '{ "listen": ');
    assert.equal(await ld.server.reloadFromFile(), false);
    const after = (await http(port, '/metrics')).body;
    assert.equal(sample(after, 'linedns_config_reloads_total'), 1);
    assert.equal(sample(after, 'linedns_config_reload_failures_total'), 1);
    const hash2 = configHash(ld.server.config);
    assert.notEqual(hash2, hash);
    assert.equal(sample(after, `linedns_config_info{hash="${hash2}"}`), 1);
    assert.equal(sample(after, `linedns_config_info{hash="${hash}"}`), undefined, 'only the running config is shown');
  });
});

/** A user stage that only passes queries on and shows a histogram it keeps itself (HistogramMetric). */
const FAKE_HISTOGRAM_STAGE = `
export default function create() {
  return {
    name: 'fake-histogram',
    observesOnly: true,
    handle(ctx, next) { return next(); },
    metrics() {
      return [{ name: 'fake_latency_seconds', help: 'a histogram a stage keeps', type: 'histogram', buckets: [0.01, 0.1],
        samples: [{ labels: { upstream: 'u1' }, counts: [2, 1, 1], sum: 0.5 }] }];
    },
  };
}
`;

test('admin: exact reply counts by transport, type, rcode and stage, the duration histogram, lines, and a stage histogram', T, async () => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({
    config: { upstreams: [up.address], admin: '127.0.0.1:0', pipeline: ['decode', './fake-histogram.js', 'records', 'smartline', 'forward'] },
    records: [{ name: 'local.test', type: 'A', rdata: '192.0.2.9' }],
    smartLine: { office: ['127.0.0.0/8'], lab: ['127.0.0.2/32'] },
    extra: { 'fake-histogram.js': FAKE_HISTOGRAM_STAGE },
  });
  try {
    const port = ld.server.admin!.address.port;
    // Without a cache, so that every count below is known whatever the clock: a repeat within
    // the second comes from the answer memo and counts as the stage that made the answer.
    // Until the memo has answered a repeat (bounded): those must be counted like the others.
    let local = 0;
    while ((local < 3 || ld.server.metrics.get('udp_memo_hits_total') === 0) && local < 30) {
      assert.equal((await query(ld.port, { name: 'local.test' })).rcode, 'NOERROR');
      local++;
    }
    assert.ok(ld.server.metrics.get('udp_memo_hits_total') > 0, 'the memo answered some');
    for (let i = 0; i < 2; i++) assert.equal((await query(ld.port, { name: 'nx.test' }, { from: '127.0.0.2' })).rcode, 'NXDOMAIN');
    assert.equal((await query(ld.port, { name: 'h.test', type: 'HINFO' })).rcode, 'NOERROR');
    assert.equal((await tcpExchange(ld.port, [buildQuery({ name: 'local.test' })])).length, 1);
    // Undecodable: no reply, counted as dropped by decode.
    assert.equal(await udpExchange(ld.port, Buffer.from([1, 2, 3]), { timeoutMs: 300 }), null);

    const m = (await http(port, '/metrics')).body;
    const r = (labels: string): number | undefined => sample(m, `linedns_replies_total{${labels}}`);
    assert.equal(r('transport="udp",type="A",rcode="NOERROR",stage="records"'), local, m);
    assert.equal(r('transport="udp",type="A",rcode="NXDOMAIN",stage="forward"'), 2);
    assert.equal(r('transport="udp",type="other",rcode="NOERROR",stage="forward"'), 1);
    assert.equal(r('transport="tcp",type="A",rcode="NOERROR",stage="records"'), 1);
    const all = m.split('\n').filter((l) => l.startsWith('linedns_replies_total{'));
    assert.equal(all.length, 4, 'no other reply counted');
    assert.match(m, /# TYPE linedns_replies_total counter/);

    assert.match(m, /# TYPE linedns_reply_duration_seconds histogram/);
    assert.equal(sample(m, 'linedns_reply_duration_seconds_count{transport="udp"}'), local + 3);
    assert.equal(sample(m, 'linedns_reply_duration_seconds_bucket{transport="udp",le="+Inf"}'), local + 3);
    assert.equal(sample(m, 'linedns_reply_duration_seconds_count{transport="tcp"}'), 1);
    assert.ok(sample(m, 'linedns_reply_duration_seconds_sum{transport="udp"}')! > 0);
    // CoreDNS's buckets: 0.25 ms doubling to 8.192 s.
    assert.ok(sample(m, 'linedns_reply_duration_seconds_bucket{transport="udp",le="0.00025"}') !== undefined);
    assert.ok(sample(m, 'linedns_reply_duration_seconds_bucket{transport="udp",le="8.192"}') !== undefined);

    // Every client here is in office (127.0.0.0/8); 127.0.0.2 is in lab too.
    assert.equal(sample(m, 'linedns_line_replies_total{line="office"}'), local + 4);
    assert.equal(sample(m, 'linedns_line_replies_total{line="lab"}'), 2);

    assert.equal(sample(m, 'linedns_decode_dropped_total'), 1, 'malformed packets');
    assert.equal(sample(m, 'linedns_udp_queries_total'), local + 4);

    // The stage's histogram: cumulative buckets, +Inf, sum and count.
    assert.match(m, /# TYPE linedns_fake_latency_seconds histogram/);
    assert.equal(sample(m, 'linedns_fake_latency_seconds_bucket{upstream="u1",le="0.01"}'), 2);
    assert.equal(sample(m, 'linedns_fake_latency_seconds_bucket{upstream="u1",le="0.1"}'), 3);
    assert.equal(sample(m, 'linedns_fake_latency_seconds_bucket{upstream="u1",le="+Inf"}'), 4);
    assert.equal(sample(m, 'linedns_fake_latency_seconds_sum{upstream="u1"}'), 0.5);
    assert.equal(sample(m, 'linedns_fake_latency_seconds_count{upstream="u1"}'), 4);
  } finally {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the upstream');
  }
});

test('admin off: no reply is counted (the transports skip the count)', T, async () => {
  const up = await TestUpstream.start(simpleHandler());
  const ld = await startLineDns({ config: { upstreams: [up.address] } });
  try {
    assert.equal(ld.server.metrics.queries, null);
    assert.equal((await query(ld.port, { name: 'a.test' })).rcode, 'NOERROR');
    assert.equal(ld.server.metrics.queries, null);
  } finally {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the upstream');
  }
});

test('admin: clients outside allow get 403; a reload changes allow and re-binds a new address', T, async () => {
  await withAdmin({ admin: { listen: '127.0.0.1:0', allow: ['127.0.0.1/32'] } }, async (ld, _up, port) => {
    assert.equal((await http(port, '/healthz', { from: '127.0.0.1' })).status, 200);
    const denied = await http(port, '/metrics', { from: '127.0.0.2' });
    assert.equal(denied.status, 403);
    assert.match(denied.body, /127\.0\.0\.2 is not in the admin allow list/);

    // Same address, another allow list: applied in place.
    rewriteConfig(ld, (c) => (c.admin = { listen: '127.0.0.1:0', allow: ['127.0.0.2/32'] }));
    assert.equal(await ld.server.reloadFromFile(), true);
    assert.equal(ld.server.admin!.address.port, port, 'not re-bound');
    assert.equal((await http(port, '/healthz', { from: '127.0.0.1' })).status, 403);
    assert.equal((await http(port, '/healthz', { from: '127.0.0.2' })).status, 200);

    // Another address: re-bound there, the old port closed.
    rewriteConfig(ld, (c) => (c.admin = '127.0.0.3:0'));
    assert.equal(await ld.server.reloadFromFile(), true);
    assert.equal(ld.server.admin!.address.host, '127.0.0.3');
    await assert.rejects(http(port, '/healthz'), /ECONNREFUSED/);

    // Removed: off.
    rewriteConfig(ld, (c) => delete c.admin);
    assert.equal(await ld.server.reloadFromFile(), true);
    assert.equal(ld.server.admin, null);
  });
});

test('admin: /readyz is 200 until every upstream is marked down, then 503 with the reason, and 200 again once a probe gets an answer', T, async () => {
  await withAdmin({}, async (ld, up, port) => {
    assert.deepEqual(await http(port, '/readyz'), { status: 200, body: 'ok\n' });
    // The upstream stops answering: three failed attempts in a row mark it down (forward's rule).
    up.handler = () => null;
    for (let i = 0; i < 3; i++) assert.equal((await query(ld.port, { name: `down${i}.test` }, { timeoutMs: 3000 })).rcode, 'SERVFAIL');
    const r = await http(port, '/readyz');
    assert.equal(r.status, 503);
    assert.match(r.body, /^not ready: forward: no upstream healthy: 127\.0\.0\.1:\d+ down \(3 failures in a row\)/);
    const m = (await http(port, '/metrics')).body;
    assert.equal(sample(m, 'linedns_ready'), 0);
    assert.equal(sample(m, `linedns_upstream_up{upstream="127.0.0.1:${up.port}",protocol="udp",route="."}`), 0);
    assert.equal(sample(m, `linedns_upstream_failures_total{upstream="127.0.0.1:${up.port}",protocol="udp",route="."}`), 3);
    // The process itself is fine.
    assert.equal((await http(port, '/healthz')).status, 200);
    // It answers again: the background probe (". NS" every forward.health.checkInterval) marks it up.
    up.handler = simpleHandler();
    let back = await http(port, '/readyz');
    for (let i = 0; i < 50 && back.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      back = await http(port, '/readyz');
    }
    assert.deepEqual(back, { status: 200, body: 'ok\n' });
    assert.equal(sample((await http(port, '/metrics')).body, `linedns_upstream_up{upstream="127.0.0.1:${up.port}",protocol="udp",route="."}`), 1);
  });
});

test('admin: /explain runs the running config offline and answers JSON; bad requests get 400', T, async () => {
  const records = [{ name: 'local.test', type: 'A', rdata: '192.0.2.7' }];
  await withAdmin({}, async (_ld, up, port) => {
    const r = await http(port, '/explain?name=local.test&type=A&client=127.0.0.1');
    assert.equal(r.status, 200);
    const e = JSON.parse(r.body) as { answeredBy: string; answer: { data: string }[]; trace: string[] };
    assert.equal(e.answeredBy, 'records');
    assert.deepEqual(e.answer.map((a) => a.data), ['192.0.2.7']);
    const f = JSON.parse((await http(port, '/explain?name=elsewhere.test&client=127.0.0.1')).body) as { notAnswered: string };
    assert.match(f.notAnswered, /^offline/);
    assert.equal(up.requests.length, 0, 'explain sends nothing upstream');
    assert.equal((await http(port, '/explain?name=local.test&client=nobody')).status, 400);
    assert.equal((await http(port, '/explain?name=local.test')).status, 400);
  }, records);
});

test('admin: /cache shows the stats; POST /cache/flush drops one name or everything', T, async () => {
  await withAdmin({}, async (ld, up, port) => {
    await query(ld.port, { name: 'a.test' });
    await query(ld.port, { name: 'a.test', type: 'AAAA' });
    await query(ld.port, { name: 'b.test' });
    await query(ld.port, { name: 'b.test' });
    assert.deepEqual(JSON.parse((await http(port, '/cache')).body), { cache: { entries: 3, hits: 1, misses: 3, stores: 3 } });

    assert.equal((await http(port, '/cache/flush')).status, 405, 'a flush must be a POST');
    const one = await http(port, '/cache/flush?name=A.Test.', { method: 'POST' });
    assert.deepEqual(JSON.parse(one.body), { name: 'A.Test.', flushed: { cache: 2 } });
    assert.equal((JSON.parse((await http(port, '/cache')).body) as { cache: { entries: number } }).cache.entries, 1);
    const before = up.requests.length;
    await query(ld.port, { name: 'a.test' });
    await query(ld.port, { name: 'b.test' });
    assert.equal(up.requests.length, before + 1, 'a.test was asked again, b.test was still cached');

    const all = await http(port, '/cache/flush', { method: 'POST' });
    assert.deepEqual(JSON.parse(all.body), { name: null, flushed: { cache: 2 } });
    assert.equal((JSON.parse((await http(port, '/cache')).body) as { cache: { entries: number } }).cache.entries, 0);
    assert.equal(sample((await http(port, '/metrics')).body, 'linedns_cache_entries'), 0);
  });
});

test('admin: without a cache in the pipeline /cache is 404; unknown paths are 404', T, async () => {
  await withAdmin({ pipeline: ['decode', 'acl', 'forward'] }, async (_ld, _up, port) => {
    assert.equal((await http(port, '/cache')).status, 404);
    assert.equal((await http(port, '/nothing')).status, 404);
  });
});

test('admin config: a wildcard needs an explicit allow; bad addresses and CIDRs are errors; off when absent', () => {
  const codes = (admin: unknown): string[] => {
    const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:5399'], admin } });
    try {
      loadConfig(configFile);
      return [];
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.issues.filter((i) => i.severity === 'error').map((i) => i.code);
    }
  };
  assert.deepEqual(codes('0.0.0.0:9153'), ['LDNS_ADMIN_WILDCARD']);
  assert.deepEqual(codes({ listen: '[::]:9153' }), ['LDNS_ADMIN_WILDCARD']);
  assert.deepEqual(codes({ listen: '0.0.0.0:9153', allow: ['10.0.0.0/8'] }), []);
  assert.deepEqual(codes({ listen: '127.0.0.1:9153', allow: ['10.0.0.0/33'] }), ['LDNS_BAD_CIDR']);
  assert.deepEqual(codes('127.0.0.1'), ['LDNS_SCHEMA_PATTERN']);
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:5399'], admin: 'localhost:9153' } });
  assert.deepEqual(loadConfig(configFile).config.admin, { host: '127.0.0.1', port: 9153, allow: ['127.0.0.0/8', '::1/128'] });
  const { configFile: none } = writeConfig({ config: { upstreams: ['127.0.0.1:5399'] } });
  assert.equal(loadConfig(none).config.admin, null);
});

test('--admin HOST:PORT names the address and keeps the file\'s allow list; a bad one is an error at --admin', () => {
  const { configFile } = writeConfig({ config: { upstreams: ['127.0.0.1:9'], admin: { listen: '127.0.0.1:9153', allow: ['10.0.0.0/8'] } } });
  const { config } = loadConfig(configFile, { admin: '127.0.0.7:9999' });
  assert.deepEqual(config.admin, { host: '127.0.0.7', port: 9999, allow: ['10.0.0.0/8'] });
  const plain = writeConfig({ config: { upstreams: ['127.0.0.1:9'] } });
  assert.deepEqual(loadConfig(plain.configFile, { admin: '127.0.0.1:9153' }).config.admin, { host: '127.0.0.1', port: 9153, allow: ['127.0.0.0/8', '::1/128'] });
  assert.throws(
    () => loadConfig(plain.configFile, { admin: 'nowhere:1' }),
    (err: unknown) => err instanceof ConfigError && err.issues.some((i) => i.file === '--admin' && i.code === 'LDNS_BAD_ADDRESS'),
  );
});

test('socket errors are logged at most once per interval for each place, address and code, with how many were not', () => {
  const lines: { msg: string; code: string; suppressed: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as { msg: string; code: string; suppressed: number }) });
  const log = new SocketErrorLog(logger, 60_000);
  const eperm = Object.assign(new Error('send EPERM'), { code: 'EPERM' });
  for (let i = 0; i < 5; i++) log.report('udp send', '127.0.0.1:53', eperm);
  log.report('udp send', '127.0.0.1:53', Object.assign(new Error('send ENOBUFS'), { code: 'ENOBUFS' }));
  log.report('tcp listen', '127.0.0.1:53', eperm);
  assert.deepEqual(lines.map((l) => [l.msg, l.code]), [
    ['socket error (udp send)', 'EPERM'],
    ['socket error (udp send)', 'ENOBUFS'],
    ['socket error (tcp listen)', 'EPERM'],
  ]);
  // Once the interval is over, the next line says how many it left out.
  let now = 1_000;
  const timed = new SocketErrorLog(logger, 10_000, () => now);
  lines.length = 0;
  for (let i = 0; i < 4; i++) timed.report('udp send', '127.0.0.1:53', eperm);
  now += 9_999;
  timed.report('udp send', '127.0.0.1:53', eperm);
  assert.equal(lines.length, 1);
  now += 1;
  timed.report('udp send', '127.0.0.1:53', eperm);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.suppressed, 4);
  assert.match(lines[1]!.msg, /4 more like it not logged/);
});
