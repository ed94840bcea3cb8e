// Generated benchmark data: the authoritative zone, dnsperf query files, and linedns's
// records.json / smart-line.json (plus the big ones for the start-up test).

import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ZONE = 'bench.test';
export const LOCAL_ZONE = 'local.test';
export const HIT_NAMES = 1000;
export const LOCAL_NAMES = 1000;
/** Sub-zone whose wildcard answers the unique names of the cache-miss workload. */
export const MISS_SUFFIX = `w.${ZONE}`;
/** A name every server answers, used to know a server is up. */
export const PROBE_NAME = `n0.${ZONE}`;

export type WorkloadName = 'hit' | 'local' | 'miss';

export const WORKLOAD_TITLES: Record<WorkloadName, string> = {
  hit: 'cache hit (1000 names, warm)',
  local: 'local records (records.json + smart-line)',
  miss: 'cache miss (unique names, forwarded to nsd)',
};

/** Deterministic PRNG (mulberry32): the same data on every run, so runs compare. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: T[], rnd: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const hitAddress = (i: number): string => `10.1.${i >> 8}.${i & 255}`;
/** What a client in the "office" line sees for local name i; "lab" gets another address. */
export const officeAddress = (i: number): string => `192.168.${i >> 8}.${i & 255}`;
const labAddress = (i: number): string => `10.2.${i >> 8}.${i & 255}`;

export interface Dataset {
  dir: string;
  zoneFile: string;
  hitQueries: string;
  localQueries: string;
  records: string;
  smartLine: string;
}

/** The zone nsd serves: HIT_NAMES names, and a wildcard for the unique cache-miss names. */
function zoneText(): string {
  const lines = [
    `$ORIGIN ${ZONE}.`,
    '$TTL 3600',
    `@ IN SOA ns.${ZONE}. hostmaster.${ZONE}. 1 3600 600 86400 3600`,
    `@ IN NS ns.${ZONE}.`,
    'ns IN A 127.0.0.1',
    '*.w IN A 10.9.9.9',
  ];
  for (let i = 0; i < HIT_NAMES; i++) lines.push(`n${i} IN A ${hitAddress(i)}`);
  return `${lines.join('\n')}\n`;
}

/** CIDRs that are not loopback, spread so the trie has real depth. */
function randomCidrs(count: number, rnd: () => number): string[] {
  const out = new Set<string>();
  while (out.size < count) {
    if (rnd() < 0.8) {
      const prefix = 12 + Math.floor(rnd() * 17); // /12 .. /28
      const n = (100 << 24) | Math.floor(rnd() * 2 ** 24);
      const masked = prefix === 0 ? 0 : (n & (0xffffffff << (32 - prefix))) >>> 0;
      out.add(`${masked >>> 24}.${(masked >> 16) & 255}.${(masked >> 8) & 255}.${masked & 255}/${prefix}`);
    } else {
      const h = (): string => Math.floor(rnd() * 65536).toString(16);
      out.add(`2001:db8:${h()}:${h()}::/64`);
    }
  }
  return [...out];
}

/**
 * smart-line.json: "office" holds loopback (the benchmark's client), "lab" another range, and
 * filler lines bring the table to about `cidrs` CIDRs so classification does real work.
 */
export function smartLineConfig(cidrs: number, lines: number, seed: number): Record<string, string[]> {
  const rnd = prng(seed);
  const cfg: Record<string, string[]> = { office: ['127.0.0.0/8', '192.168.0.0/16'], lab: ['10.2.0.0/16'] };
  const filler = Math.max(0, cidrs - 3);
  const all = randomCidrs(filler, rnd);
  const per = Math.ceil(all.length / Math.max(1, lines));
  for (let l = 0; l < lines && l * per < all.length; l++) cfg[`isp${l}`] = all.slice(l * per, (l + 1) * per);
  return cfg;
}

interface RecordJson {
  name: string;
  type: 'A';
  ttl: number;
  rdata: string;
  labels: string[];
}

/** Two views of every local name: "office" (loopback clients) and "lab". */
function localRecords(): RecordJson[] {
  const out: RecordJson[] = [];
  for (let i = 0; i < LOCAL_NAMES; i++) {
    const name = `r${i}.${LOCAL_ZONE}`;
    out.push({ name, type: 'A', ttl: 60, rdata: officeAddress(i), labels: ['office'] });
    out.push({ name, type: 'A', ttl: 60, rdata: labAddress(i), labels: ['lab'] });
  }
  return out;
}

export function writeDataset(dir: string): Dataset {
  const rnd = prng(4);
  const d: Dataset = {
    dir,
    zoneFile: join(dir, `${ZONE}.zone`),
    hitQueries: join(dir, 'hit.queries'),
    localQueries: join(dir, 'local.queries'),
    records: join(dir, 'records.json'),
    smartLine: join(dir, 'smart-line.json'),
  };
  writeFileSync(d.zoneFile, zoneText());
  const hit = shuffled(Array.from({ length: HIT_NAMES }, (_, i) => `n${i}.${ZONE} A`), rnd);
  writeFileSync(d.hitQueries, `${hit.join('\n')}\n`);
  const local = shuffled(Array.from({ length: LOCAL_NAMES }, (_, i) => `r${i}.${LOCAL_ZONE} A`), rnd);
  writeFileSync(d.localQueries, `${local.join('\n')}\n`);
  writeFileSync(d.records, JSON.stringify(localRecords()));
  writeFileSync(d.smartLine, JSON.stringify(smartLineConfig(1000, 50, 7)));
  return d;
}

/** Local data as "name address" pairs, for the peers' equivalents of records.json. */
export function localPairs(): Array<[string, string]> {
  return Array.from({ length: LOCAL_NAMES }, (_, i) => [`r${i}.${LOCAL_ZONE}`, officeAddress(i)]);
}

let fileCounter = 0;
const nonce = Date.now().toString(36);

/**
 * A query file of `count` names never used before in this run (nor in earlier runs: the nonce
 * is the start time), all under the nsd wildcard, so every query misses every cache.
 */
export async function writeUniqueQueries(dir: string, count: number, suffix = MISS_SUFFIX): Promise<string> {
  const id = fileCounter++;
  const path = join(dir, `unique-${id}.queries`);
  const out = createWriteStream(path);
  const chunk = 10_000;
  for (let i = 0; i < count; i += chunk) {
    let text = '';
    for (let j = i; j < Math.min(count, i + chunk); j++) text += `u${nonce}-${id}-${j}.${suffix} A\n`;
    if (!out.write(text)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return path;
}

/** records.json and smart-line.json of the start-up test: 100,000 records, 10,000 CIDRs. */
export function writeBigConfig(dir: string, records: number, cidrs: number): { records: string; smartLine: string } {
  const lines = smartLineConfig(cidrs, 100, 11);
  const names = Object.keys(lines);
  const out: RecordJson[] = [];
  for (let i = 0; i < records; i++) {
    out.push({ name: `s${i}.big.test`, type: 'A', ttl: 60, rdata: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, labels: [names[i % names.length]!] });
  }
  const paths = { records: join(dir, 'big-records.json'), smartLine: join(dir, 'big-smart-line.json') };
  writeFileSync(paths.records, JSON.stringify(out, null, 1));
  writeFileSync(paths.smartLine, JSON.stringify(lines, null, 1));
  return paths;
}
