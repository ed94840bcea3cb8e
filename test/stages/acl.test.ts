// The acl stage through real sockets: the allow list in entry and top-level form, its default,
// a reload in place (memoised answers included), [] refusing everyone, bad CIDRs at their place.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../../src/app/config.js';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { Rcode } from '../../src/lib/dns/constants.js';
import type { AclOptions } from '../../src/stages/acl/options.js';
import { udpExchange } from '../helpers/client.js';
import { mustParse, rawQuery } from '../helpers/packets.js';
import { stageOptions, startWithUpstream, writeConfig, type Running } from '../helpers/server.js';
import { simpleHandler, TestUpstream } from '../helpers/upstream.js';

const RECORDS = [{ name: 'local.test', type: 'A', ttl: 60, rdata: '192.0.2.1' }];
const DEFAULT_ALLOW = ['127.0.0.0/8', '::1/128'];

interface Rig {
  ld: Running;
  up: TestUpstream;
  /** The rcode `from` gets for local.test (a local answer, so the answer memo can keep it). */
  rcode(from: string): Promise<number>;
  refused(): number;
}

let nextId = 100;

/** Rewrites the running server's linedns.json (as an operator would before SIGHUP). */
function rewrite(r: Rig, config: Record<string, unknown>): void {
  writeFileSync(r.ld.configFile, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: [r.up.address], records: 'records.json', ...config }));
}

async function rig(t: TestContext, config: Record<string, unknown>): Promise<Rig> {
  const { ld, up } = await startWithUpstream(t, simpleHandler(), { config, records: RECORDS });
  return {
    ld,
    up,
    rcode: async (from) => mustParse(await udpExchange(ld.port, rawQuery('local.test', 1, { id: nextId++ & 0xffff }), { from }), `reply to ${from}`).rcode,
    refused: () => ld.server.metrics.get('acl_refused_total'),
  };
}

test('acl: by default every loopback client is served, and the options are the schema default', async (t) => {
  const r = await rig(t, {});
  assert.deepEqual(stageOptions<AclOptions>(r.ld.server.config, 'acl'), { allow: DEFAULT_ALLOW });
  for (const from of ['127.0.0.1', '127.0.0.2', '127.255.255.254']) assert.equal(await r.rcode(from), Rcode.NOERROR, from);
  assert.equal(r.refused(), 0);
});

test('acl: the top-level `allow` applies; an entry `allow` wins over it', async (t) => {
  const top = await rig(t, { allow: ['127.0.0.2/32'] });
  assert.equal(await top.rcode('127.0.0.2'), Rcode.NOERROR);
  assert.equal(await top.rcode('127.0.0.3'), Rcode.REFUSED);
  assert.equal(top.refused(), 1);

  const both = await rig(t, { allow: ['127.0.0.2/32'], pipeline: ['decode', { acl: { allow: ['127.0.0.3/32'] } }, 'records', 'forward'] });
  assert.deepEqual(stageOptions<AclOptions>(both.ld.server.config, 'acl'), { allow: ['127.0.0.3/32'] });
  assert.equal(await both.rcode('127.0.0.3'), Rcode.NOERROR);
  assert.equal(await both.rcode('127.0.0.2'), Rcode.REFUSED, 'the top-level list is not added to the entry');
  assert.equal(both.refused(), 1);
});

test('acl: `allow: []` refuses every client, loopback included, and nothing is asked upstream', async (t) => {
  const r = await rig(t, { pipeline: ['decode', { acl: { allow: [] } }, 'forward'] });
  const reply = mustParse(await udpExchange(r.ld.port, rawQuery('up.test', 1, { id: 5 })));
  assert.equal(reply.rcode, Rcode.REFUSED);
  assert.equal(reply.qname, 'up.test', 'the question is echoed');
  assert.equal(r.up.requests.length, 0);
  assert.equal(r.refused(), 1);
});

test('acl: a reload applies a new list in place, even to a client whose answer the memo kept', async (t) => {
  const r = await rig(t, { pipeline: ['decode', { acl: { allow: ['127.0.0.1/32'] } }, 'records', 'forward'] });
  const stagesBefore = r.ld.server.engine.stages;
  // The memo keeps an answer within its second: a repeat that straddles a second boundary runs
  // the pipeline again, so ask until one repeat was a memo hit (bounded).
  const memoHits = (): number => r.ld.server.metrics.get('udp_memo_hits_total');
  for (let i = 0; i < 5 && memoHits() === 0; i++) assert.equal(await r.rcode('127.0.0.1'), Rcode.NOERROR);
  assert.ok(memoHits() >= 1, 'a repeat came from the answer memo');
  assert.equal(await r.rcode('127.0.0.2'), Rcode.REFUSED);

  rewrite(r, { pipeline: ['decode', { acl: { allow: ['127.0.0.2/32'] } }, 'records', 'forward'] });
  assert.equal(await r.ld.server.reloadFromFile(), true);
  assert.equal(r.ld.server.engine.stages, stagesBefore, 'reloaded in place, not rebuilt');

  assert.equal(await r.rcode('127.0.0.2'), Rcode.NOERROR);
  assert.equal(await r.rcode('127.0.0.1'), Rcode.REFUSED, 'the memoised answer is not served past the new list');
  assert.equal(r.refused(), 2);
});

test('acl: a bad CIDR in the entry is an error at its place in the file', () => {
  try {
    loadConfig(writeConfig({ config: { upstreams: ['127.0.0.1:9'], pipeline: ['decode', { acl: { allow: ['127.0.0.1/32', '10.0.0.0/33'] } }, 'forward'] } }).configFile);
    assert.fail('the config was accepted');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    const errors = err.issues.filter((i) => i.severity === 'error').map((i) => formatIssue(i).replace(/^.*linedns\.json:/, ''));
    assert.equal(errors.length, 1, errors.join('\n'));
    assert.match(errors[0]!, /^\d+:\d+: error: \$\.pipeline\[1\]\.acl\.allow\[1\]: "10\.0\.0\.0\/33": prefix "\/33" is not 0\.\.32/);
  }
});
