// Time and memory to parse a generated 100,000-record zone (mixed types) with src/lib/dns/zonefile.ts,
// then to load it as linedns does (config loader, zone checks) and build the zones stage on it.
// Standalone and offline: node dist/bench/zone-load.js [records]; the target is well under a second.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseZoneFile } from '../src/lib/dns/zonefile.js';
import { loadConfig } from '../src/app/config.js';
import { silentLogger } from '../src/lib/logger.js';
import { Metrics } from '../src/lib/metrics.js';
import { ViewRegistry } from '../src/core/views.js';
import type { QueryContext } from '../src/core/context.js';
import type { Stage } from '../src/core/stage.js';
import { zonesStage } from '../src/stages/zones/index.js';

const MAX_RECORDS = 1_000_000;

/** A zone of `count` records cycling through the types a real zone mixes, with $INCLUDE-free text. */
export function generateZone(count: number): string {
  const lines = ['$ORIGIN bench.test.', '$TTL 3600', '@ IN SOA ns1 hostmaster 2024010101 7200 3600 1209600 300', '  NS ns1', '  NS ns2', 'ns1 A 192.0.2.1', 'ns2 A 192.0.2.2'];
  for (let i = lines.length - 2; i < count; i++) {
    const h = `h${i}`;
    switch (i % 10) {
      case 0: lines.push(`${h} 300 IN A 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`); break;
      case 1: lines.push(`${h} IN AAAA 2001:db8:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`); break;
      case 2: lines.push(`${h} MX 10 mail${i % 100}.example.net.`); break;
      case 3: lines.push(`${h} TXT "v=spf1 include:_spf.example.net -all" "id=${i}"`); break;
      case 4: lines.push(`www.${h} CNAME ${h}`); break;
      case 5: lines.push(`_sip._tcp.${h} 1h SRV 10 60 5060 sip.${h}`); break;
      case 6: lines.push(`${h} CAA 0 issue "letsencrypt.org"`); break;
      case 7: lines.push(`${h} NS ns1.${h}`); break;
      case 8: lines.push(`${i & 255}.${(i >> 8) & 255} PTR ${h}.bench.test.`); break;
      default: lines.push(`${h} TYPE65280 \\# 4 0a000001`); break;
    }
  }
  return `${lines.join('\n')}\n`;
}

function mb(n: number): string {
  return (n / 1048576).toFixed(1);
}

function main(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    // Retained memory means nothing without a collection before each reading.
    const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  const count = Math.min(MAX_RECORDS, Number(process.argv[2] ?? 100_000) || 100_000);
  const dir = mkdtempSync(join(tmpdir(), 'zone-load-'));
  try {
    const file = join(dir, 'bench.zone');
    const text = generateZone(count);
    writeFileSync(file, text);
    gc();
    const before = process.memoryUsage();
    // CPU time beside wall time: on a shared machine the wall clock also counts other processes.
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const first = parseZoneFile(file);
    const coldMs = performance.now() - t0;
    const coldCpu = process.cpuUsage(c0);
    gc();
    const after = process.memoryUsage();
    if (first.errors.length > 0) throw new Error(`generated zone has errors: ${first.errors[0]!.message}`);
    const retained = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
    const warm: number[] = [];
    const warmCpu: number[] = [];
    for (let i = 0; i < 5; i++) {
      const c = process.cpuUsage();
      const t = performance.now();
      parseZoneFile(file);
      warm.push(performance.now() - t);
      const u = process.cpuUsage(c);
      warmCpu.push((u.user + u.system) / 1000);
    }
    warm.sort((a, b) => a - b);
    warmCpu.sort((a, b) => a - b);
    console.log(`zone: ${first.records.length} records, ${mb(text.length)} MB of text`);
    const cpu = (coldCpu.user + coldCpu.system) / 1000;
    console.log(`parse: ${coldMs.toFixed(0)} ms cold (first in the process; ${cpu.toFixed(0)} ms CPU), ${warm[2]!.toFixed(0)} ms warm (median of 5; ${warmCpu[2]!.toFixed(0)} ms CPU)`);
    console.log(`memory retained by the result: ${mb(retained)} MB (${Math.round(retained / first.records.length)} B a record); rss ${mb(after.rss)} MB`);
    loadAndBuild(dir, first.records.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What a server start (or a reload) costs for the zone: linedns.json naming it, loadConfig (parse,
 * zone checks, digest, freezing) and the zones stage built on the result (its names, cuts, SOA).
 */
function loadAndBuild(dir: string, records: number): void {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const configFile = join(dir, 'linedns.json');
  writeFileSync(configFile, JSON.stringify({ listen: ['127.0.0.1:0'], upstreams: ['127.0.0.1:9'], zones: ['bench.zone'], pipeline: ['decode', 'zones', 'forward'] }));
  const env = (config: ReturnType<typeof loadConfig>['config']) => ({
    logger: silentLogger(),
    metrics: new Metrics(),
    config,
    views: new ViewRegistry<QueryContext>(),
    position: { providedBefore: () => false, providedAfter: () => false },
  });
  const run = (): { load: number; build: number; cpu: number; kept: [unknown, Stage] } => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const { config } = loadConfig(configFile);
    const t1 = performance.now();
    const stage = zonesStage.create(undefined, env(config)) as Stage;
    const t2 = performance.now();
    const c = process.cpuUsage(c0);
    return { load: t1 - t0, build: t2 - t1, cpu: (c.user + c.system) / 1000, kept: [config, stage] };
  };
  // Memory on the first run: what a server holds for the zone (config and stage), after a collection.
  gc();
  const before = process.memoryUsage();
  const cold = run();
  gc();
  const after = process.memoryUsage();
  const retained = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers;
  // Again with the first still held: two configurations coexist during a reload.
  const second = run();
  gc();
  const both = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - after.heapUsed - after.arrayBuffers;
  const warm = [second, run(), run()].sort((a, b) => a.load + a.build - b.load - b.build);
  const mid = warm[1]!;
  const show = (r: { load: number; build: number; cpu: number }): string => `${(r.load + r.build).toFixed(0)} ms (load ${r.load.toFixed(0)} + stage build ${r.build.toFixed(0)}; ${r.cpu.toFixed(0)} ms CPU)`;
  console.log(`loader + zones stage: ${show(cold)} first, ${show(mid)} again (median of 3)`);
  console.log(`memory retained by config + stage: ${mb(retained)} MB first, ${mb(both)} MB more for a second copy (${Math.round(Math.max(retained, both) / records)} B a record, ${cold.kept.length + second.kept.length} objects kept); rss ${mb(after.rss)} MB`);
}

// Importable for generateZone (to time other parsers on the same text) without running.
if (process.argv[1] === fileURLToPath(import.meta.url)) main();
