// A split-horizon rig shared by the label-filter and line-aware cache tests: one name local for
// the "internal" line and answered by a loopback upstream for everyone else, and a client helper.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startLineDns, bounded, type Running, type TestFiles } from './server.js';
import { TestUpstream } from './upstream.js';
import { udpExchange } from './client.js';
import { ipv4, mustParse, QNAME_PTR, rawQuery, replyTo, rr, type CheckedMessage, type OptFields } from './packets.js';

export const NAME = 'app.split.example';
export const LOCAL = '10.0.0.2';
export const PUBLIC = '198.51.100.7';
export const INSIDE = '127.0.0.2';
export const OUTSIDE = '127.0.0.3';

export const SPLIT = {
  smartLine: { internal: ['127.0.0.2/32', '10.1.0.0/16'], external: ['127.0.0.3/32', '10.2.0.0/16'] },
  records: [{ name: NAME, type: 'A', ttl: 60, rdata: LOCAL, labels: ['internal'] }],
};

export interface Rig {
  up: TestUpstream;
  ld: Running;
  metric(name: string): number;
}

export async function withRig(files: Omit<TestFiles, 'config'> & { config?: Record<string, unknown> }, body: (rig: Rig) => Promise<void>): Promise<void> {
  // Every A question gets PUBLIC (TTL 300) from the upstream.
  const up = await TestUpstream.start(({ raw }) => replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(PUBLIC))] }));
  try {
    const ld = await startLineDns({ ...files, config: { upstreams: [up.address], forward: { timeout: 500, deadline: 1500 }, ...files.config } });
    try {
      await body({ up, ld, metric: (n) => ld.server.metrics.get(n) });
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  } finally {
    await bounded(up.close(), 'the upstream');
  }
}

let nextId = 7000;

/** One A query from `from`, its reply parsed strictly and its ID checked. */
export async function ask(port: number, name: string, from: string, opt?: OptFields): Promise<CheckedMessage> {
  const id = nextId++ & 0xffff;
  const m = mustParse(await udpExchange(port, rawQuery(name, 1, { id, opt }), { from, timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

/**
 * docs/examples/geo-classifier.js as a user stage in `pipeline`, with two labelled answers for
 * geo.example. smart-line.json's CIDRs match neither client: the lines come from the example's own table.
 */
export function geoFiles(pipeline: string[]): TestFiles {
  return {
    smartLine: { cn: ['192.0.2.0/24'], us: ['198.51.100.0/24'], lan: ['203.0.113.0/24'] },
    records: [
      { name: 'geo.example', type: 'A', rdata: '192.0.2.1', labels: ['cn'] },
      { name: 'geo.example', type: 'A', rdata: '192.0.2.2', labels: ['us'] },
    ],
    extra: { 'geo-classifier.js': readFileSync(new URL('../../../docs/examples/geo-classifier.js', import.meta.url), 'utf8') },
    config: { pipeline, smartLineUnmatched: 'unlabelled' },
  };
}
