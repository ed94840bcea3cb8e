// The ratelimit stage through real sockets: entry and top-level options merged (the entry
// winning), the default burst, TCP, reloads in place, the LRU of prefixes, its requirement.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../../src/app/config.js';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { Rcode } from '../../src/lib/dns/constants.js';
import type { RateLimitOptions } from '../../src/stages/ratelimit/options.js';
import { tcpExchange, udpExchange } from '../helpers/client.js';
import { mustParse, rawQuery } from '../helpers/packets.js';
import { stageOptions, startWithUpstream, writeConfig, type Running } from '../helpers/server.js';
import { udpBurst } from '../helpers/tcp-abuse.js';
import { simpleHandler, TestUpstream } from '../helpers/upstream.js';

const RECORDS = [{ name: 'local.test', type: 'A', ttl: 60, rdata: '192.0.2.1' }];
/** Tokens come back this slowly in every test here: one per 100 s, so no refill within a test. */
const SLOW = 0.01;

interface Rig {
  ld: Running;
  up: TestUpstream;
  limited(): number;
  /** Sends `n` queries for local.test from `from` at once; counts the rcodes (null: no reply). */
  burst(n: number, from?: string): Promise<{ ok: number; refused: number; none: number }>;
}

async function rig(t: TestContext, config: Record<string, unknown>): Promise<Rig> {
  const { ld, up } = await startWithUpstream(t, simpleHandler(), { config, records: RECORDS });
  return {
    ld,
    up,
    limited: () => ld.server.metrics.get('ratelimit_limited_total'),
    burst: async (n, from = '127.0.0.5') => {
      const replies = await udpBurst(ld.port, n, (i) => rawQuery('local.test', 1, { id: i }), { from, timeoutMs: 600 });
      const count = { ok: 0, refused: 0, none: 0 };
      for (const r of replies) {
        if (r === null) count.none++;
        else if (mustParse(r).rcode === Rcode.REFUSED) count.refused++;
        else count.ok++;
      }
      return count;
    },
  };
}

/** Rewrites the running server's linedns.json (as an operator would before SIGHUP) and reloads. */
async function reload(r: Rig, config: Record<string, unknown>): Promise<void> {
  writeFileSync(r.ld.configFile, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: [r.up.address], records: 'records.json', ...config }));
  assert.equal(await r.ld.server.reloadFromFile(), true);
}

test('ratelimit: the top-level `rateLimit` and the entry merge, an entry option winning', async (t) => {
  const r = await rig(t, { rateLimit: { qps: SLOW, burst: 2, action: 'drop' }, pipeline: ['decode', { ratelimit: { burst: 4 } }, 'records', 'forward'] });
  assert.deepEqual(stageOptions<RateLimitOptions>(r.ld.server.config, 'ratelimit'), { qps: SLOW, burst: 4, action: 'drop', ipv4Prefix: 24, ipv6Prefix: 56, maxClients: 100000 });
  assert.deepEqual(await r.burst(10), { ok: 4, refused: 0, none: 6 }, 'burst 4 from the entry, drop from the top level');
  assert.equal(r.limited(), 6);
});

test('ratelimit: burst defaults to twice qps, rounded up; action to REFUSED', async (t) => {
  // 2 x 1.25 = 2.5, so 3; a token comes back every 800 ms, far longer than the burst takes.
  const r = await rig(t, { pipeline: ['decode', { ratelimit: { qps: 1.25 } }, 'records', 'forward'] });
  assert.equal(stageOptions<RateLimitOptions>(r.ld.server.config, 'ratelimit')?.action, 'refuse');
  assert.deepEqual(await r.burst(8), { ok: 3, refused: 5, none: 0 });
  assert.equal(r.limited(), 5);
});

test('ratelimit: TCP queries draw from the same bucket as UDP ones', async (t) => {
  const r = await rig(t, { pipeline: ['decode', { ratelimit: { qps: SLOW, burst: 3 } }, 'records', 'forward'] });
  assert.deepEqual(await r.burst(2, '127.0.0.1'), { ok: 2, refused: 0, none: 0 });
  const overTcp = await tcpExchange(r.ld.port, [0, 1, 2].map((i) => rawQuery('local.test', 1, { id: 100 + i })));
  assert.deepEqual(
    overTcp.map((m) => mustParse(m).rcode).sort(),
    [Rcode.NOERROR, Rcode.REFUSED, Rcode.REFUSED],
    'one token was left for the TCP connection',
  );
  assert.equal(r.limited(), 2);
});

test('ratelimit: a reload applies new options in place; buckets are kept unless the prefixes or maxClients change', async (t) => {
  const pipeline = (o: Record<string, unknown>): unknown[] => ['decode', { ratelimit: o }, 'records', 'forward'];
  const r = await rig(t, { pipeline: pipeline({ qps: SLOW, burst: 2 }) });
  const stages = r.ld.server.engine.stages;
  assert.deepEqual(await r.burst(5), { ok: 2, refused: 3, none: 0 });

  // A larger burst: a new prefix gets it; the emptied bucket stays empty (a SIGHUP forgives no one).
  await reload(r, { pipeline: pipeline({ qps: SLOW, burst: 4 }) });
  assert.equal(r.ld.server.engine.stages, stages, 'reloaded in place, not rebuilt');
  assert.deepEqual(await r.burst(3), { ok: 0, refused: 3, none: 0 }, '127.0.0.0/24 kept its empty bucket');
  assert.deepEqual(await r.burst(6, '127.0.3.5'), { ok: 4, refused: 2, none: 0 }, 'the new burst');

  // Another prefix length changes what a bucket stands for: every client starts afresh.
  await reload(r, { pipeline: pipeline({ qps: SLOW, burst: 4, ipv4Prefix: 32 }) });
  assert.deepEqual(await r.burst(6), { ok: 4, refused: 2, none: 0 });

  // Off (no options): every query passes, and the answer memo, which a limit turns off, is back.
  assert.equal(r.ld.server.engine.memo, null);
  await reload(r, { pipeline: ['decode', 'ratelimit', 'records', 'forward'] });
  assert.notEqual(r.ld.server.engine.memo, null);
  assert.deepEqual(await r.burst(20), { ok: 20, refused: 0, none: 0 });
  assert.equal(r.limited(), 10);
});

test('ratelimit: maxClients bounds the prefixes tracked; a forgotten prefix starts with a full bucket', async (t) => {
  const ask = async (r: Rig, from: string): Promise<number> => mustParse(await udpExchange(r.ld.port, rawQuery('local.test', 1, { id: 9 }), { from })).rcode;
  const alternate = async (r: Rig): Promise<number[]> => {
    const out: number[] = [];
    for (const from of ['127.0.1.1', '127.0.2.1', '127.0.1.1', '127.0.2.1']) out.push(await ask(r, from));
    return out;
  };
  const two = await rig(t, { pipeline: ['decode', { ratelimit: { qps: SLOW, burst: 1, maxClients: 2 } }, 'records', 'forward'] });
  assert.deepEqual(await alternate(two), [Rcode.NOERROR, Rcode.NOERROR, Rcode.REFUSED, Rcode.REFUSED]);
  const one = await rig(t, { pipeline: ['decode', { ratelimit: { qps: SLOW, burst: 1, maxClients: 1 } }, 'records', 'forward'] });
  assert.deepEqual(await alternate(one), [Rcode.NOERROR, Rcode.NOERROR, Rcode.NOERROR, Rcode.NOERROR], 'each /24 evicts the other');
  assert.equal(one.limited(), 0);
});

test('ratelimit: placed before decode, the loader refuses it with the reason and the fix', () => {
  try {
    loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: [{ ratelimit: { qps: 1 } }, 'decode', 'forward'] } }).configFile);
    assert.fail('the config was accepted');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    const errors = err.issues.filter((i) => i.severity === 'error').map((i) => formatIssue(i).replace(/^.*linedns\.json:/, ''));
    assert.deepEqual(errors, [
      '9:5: error: $.pipeline[0]: "ratelimit" needs "query" from a stage before it: a refusal echoes the decoded question; expected "decode" before "ratelimit" (it is on the other side now) [LDNS_REQUIREMENT]',
    ]);
  }
});
