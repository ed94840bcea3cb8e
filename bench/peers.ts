// The servers under test and the nsd upstream: how each is configured (the same way: loopback,
// one thread, nsd as the only upstream, a cache) and started on a port the benchmark picks.

import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { freePort, LOOPBACK, waitForDns } from './net.js';
import { commandExists, start, stop, versionOf, type Started } from './proc.js';
import { localPairs, PROBE_NAME, ZONE, type Dataset, type WorkloadName } from './workloads.js';

export interface PeerEnv {
  /** Temporary directory for configs and logs. */
  dir: string;
  /** Repository root: dist/bench/*.js (the reference servers) are under it. */
  root: string;
  /** Root of the linedns under test (a snapshot of the build): dist/src/cli.js is under it. */
  linednsRoot: string;
  /** Snapshot of the BENCH_BASELINE checkout, when one was given. */
  baselineRoot: string | null;
  data: Dataset;
  nsdPort: number;
}

export interface Running {
  name: string;
  port: number;
  /** The process whose CPU and RSS (with its descendants) are measured. */
  pid: number;
  proc: Started | null;
  stop(): Promise<void>;
}

export interface LineDnsOptions {
  workers?: number;
  /** false: every query through the pipeline (the answer memo off). */
  answerMemo?: boolean;
  nodeArgs?: string[];
  cacheEntries?: number;
  upstreamPort?: number;
  /** HOST:PORT upstreams in order, in place of the one nsd (the dead-upstream workload). */
  upstreams?: string[];
  /** The row's name, in place of the one the options imply. */
  name?: string;
  /** Run this snapshot's linedns (the baseline) instead of env.linednsRoot, under this row name. */
  baseline?: boolean;
  /** A log stage first in the default pipeline, writing to a file: every query, or 1 in `sample`. */
  log?: { sample: number };
  /** The cache's `prefetch` option (hits before an answer is refreshed early); absent: the default, off. */
  prefetch?: number;
  /** The admin endpoint on (so the transports count every reply), its /metrics fetched every `scrapeMs`. */
  admin?: { scrapeMs: number };
}

/**
 * Fetches /metrics every `ms` as Prometheus would, for as long as the server runs: what the
 * endpoint costs the query path is counting plus this. Returns the function that stops it.
 */
function scrapeEvery(port: number, ms: number): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const once = (): void => {
    if (stopped) return;
    const req = get({ host: LOOPBACK, port, path: '/metrics', agent: false }, (res) => {
      res.resume();
      res.on('end', schedule);
    });
    req.on('error', schedule);
  };
  const schedule = (): void => {
    if (!stopped) timer = setTimeout(once, ms);
  };
  schedule();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}

/** The default pipeline, spelled out so a bench row can put the log stage in front of it. */
const DEFAULT_PIPELINE = ['decode', 'acl', 'ratelimit', 'cache', 'rewrite', 'records', 'zones', 'smartline', 'forward'];

export interface ServerSpec {
  name: string;
  /** What the table says about how it was run. */
  note: string;
  /** Binary that must be installed, or null for Node servers. */
  binary: string | null;
  workloads: readonly WorkloadName[];
  start(env: PeerEnv, workload: WorkloadName): Promise<Running>;
}

const READY_MS = 15_000;

async function launch(name: string, dir: string, port: number, cmd: string, args: string[], logName: string): Promise<Running> {
  const proc = start(name, cmd, args, join(dir, `${logName}.log`));
  try {
    await waitForDns(port, PROBE_NAME, READY_MS, () => proc.child.exitCode === null);
  } catch (err) {
    await stop(proc);
    throw new Error(`${name} did not start: ${(err as Error).message}\n${proc.output().slice(-2000)}`);
  }
  return { name, port, pid: proc.pid, proc, stop: () => stop(proc) };
}

let logCounter = 0;
const logName = (name: string): string => `${name}-${logCounter++}`;

export async function startNsd(dir: string, zoneFile: string): Promise<Running> {
  const port = await freePort();
  const conf = join(dir, 'nsd.conf');
  // rrl-ratelimit 0: otherwise nsd rate-limits the wildcard answers the miss workload relies on.
  writeFileSync(
    conf,
    `server:
  ip-address: ${LOOPBACK}
  port: ${port}
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  database: ""
  zonelistfile: "${join(dir, 'nsd.zonelist')}"
  xfrdfile: "${join(dir, 'nsd.xfrd')}"
  pidfile: "${join(dir, 'nsd.pid')}"
  logfile: "${join(dir, 'nsd.log')}"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: ${ZONE}
  zonefile: "${zoneFile}"
`,
  );
  return launch('nsd', dir, port, 'nsd', ['-d', '-c', conf], 'nsd');
}

/** linedns with the benchmark's config: nsd upstream, records.json + smart-line.json, a cache. */
export async function startLineDns(env: PeerEnv, opts: LineDnsOptions = {}): Promise<Running> {
  const port = await freePort();
  const conf = join(env.dir, `linedns-${port}.json`);
  const adminPort = opts.admin === undefined ? 0 : await freePort();
  writeFileSync(
    conf,
    JSON.stringify({
      listen: [`${LOOPBACK}:${port}`],
      upstreams: opts.upstreams ?? [`${LOOPBACK}:${opts.upstreamPort ?? env.nsdPort}`],
      records: env.data.records,
      smartLine: env.data.smartLine,
      cache: { maxEntries: opts.cacheEntries ?? 100_000, ...(opts.prefetch === undefined ? {} : { prefetch: opts.prefetch }) },
      ...(opts.answerMemo === undefined ? {} : { answerMemo: opts.answerMemo }),
      ...(opts.admin === undefined ? {} : { admin: `${LOOPBACK}:${adminPort}` }),
      ...(opts.log === undefined ? {} : { pipeline: [{ log: { file: join(env.dir, `queries-${port}.log`), sample: opts.log.sample } }, ...DEFAULT_PIPELINE] }),
    }),
  );
  const root = opts.baseline ? env.baselineRoot : env.linednsRoot;
  if (root === null) throw new Error('linedns-base needs BENCH_BASELINE');
  const args = [...(opts.nodeArgs ?? []), join(root, 'dist/src/cli.js'), 'serve', '--config', conf, '--log-level', 'warn'];
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers));
  const name =
    opts.name ??
    (opts.baseline
      ? 'linedns-base'
      : opts.log !== undefined
        ? `linedns-log${opts.log.sample > 1 ? opts.log.sample : ''}`
        : opts.admin !== undefined
          ? 'linedns-admin'
          : opts.workers && opts.workers > 1
            ? `linedns-${opts.workers}w`
            : opts.prefetch !== undefined
              ? 'linedns-prefetch'
              : opts.answerMemo === false
                ? 'linedns-nomemo'
                : 'linedns');
  const running = await launch(name, env.dir, port, process.execPath, args, logName(name));
  if (opts.admin === undefined) return running;
  const stopScraping = scrapeEvery(adminPort, opts.admin.scrapeMs);
  return {
    ...running,
    stop: async () => {
      stopScraping();
      await running.stop();
    },
  };
}

async function startDnsdist(env: PeerEnv): Promise<Running> {
  const port = await freePort();
  const conf = join(env.dir, `dnsdist-${port}.conf`);
  const names = localPairs().map(([n]) => `s:add(newDNSName('${n}.'))`).join('\n');
  // Security polling would send a query to the Internet through the system resolver: off.
  writeFileSync(
    conf,
    `setLocal('${LOOPBACK}:${port}')
setSecurityPollSuffix('')
newServer({address='${LOOPBACK}:${env.nsdPort}', checkName='${ZONE}.', checkType='SOA', checkInterval=1})
pc = newPacketCache(100000, {maxTTL=86400, minTTL=0})
getPool(''):setCache(pc)
local s = newDNSNameSet()
${names}
-- One address for the whole set: dnsdist has no per-name local data short of Lua or 1000 rules.
addAction(QNameSetRule(s), SpoofAction('192.168.0.1'))
`,
  );
  return launch('dnsdist', env.dir, port, 'dnsdist', ['-C', conf, '--supervised', '--disable-syslog'], logName('dnsdist'));
}

/** Unbound as the benchmark runs it; `forwardAddrs` (HOST@PORT, in order) in place of nsd alone. */
export async function startUnbound(env: PeerEnv, forwardAddrs: readonly string[] = [`${LOOPBACK}@${env.nsdPort}`]): Promise<Running> {
  const port = await freePort();
  const conf = join(env.dir, `unbound-${port}.conf`);
  const hints = join(env.dir, 'empty.hints');
  writeFileSync(hints, '');
  const local = localPairs().map(([n, a]) => `  local-data: "${n}. 60 IN A ${a}"`).join('\n');
  // A pure forwarder: no validator (nor trust anchors to fetch), empty root hints, and "test."
  // un-blocked (Unbound answers .test itself by default, RFC 6761).
  writeFileSync(
    conf,
    `server:
  interface: ${LOOPBACK}@${port}
  port: ${port}
  do-ip6: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "${env.dir}"
  pidfile: "${join(env.dir, `unbound-${port}.pid`)}"
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 0
  do-not-query-localhost: no
  root-hints: "${hints}"
  module-config: "iterator"
  qname-minimisation: no
  num-queries-per-thread: 4096
  local-zone: "test." nodefault
  local-zone: "local.test." static
${local}
forward-zone:
  name: "."
${forwardAddrs.map((a) => `  forward-addr: ${a}`).join('\n')}
`,
  );
  return launch('unbound', env.dir, port, 'unbound', ['-d', '-c', conf], logName('unbound'));
}

async function startDnsmasq(env: PeerEnv): Promise<Running> {
  const port = await freePort();
  const hosts = join(env.dir, 'dnsmasq.hosts');
  writeFileSync(hosts, `${localPairs().map(([n, a]) => `${a} ${n}`).join('\n')}\n`);
  // cache-size 10000: dnsmasq warns that more "may cause performance issues"; the hit workload
  // needs 1000 entries.
  return launch(
    'dnsmasq',
    env.dir,
    port,
    'dnsmasq',
    [
      '--no-daemon',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hosts}`,
      `--server=${LOOPBACK}#${env.nsdPort}`,
      `--port=${port}`,
      `--listen-address=${LOOPBACK}`,
      '--bind-interfaces',
      '--cache-size=10000',
      '--dns-forward-max=1000',
      '--pid-file=',
    ],
    logName('dnsmasq'),
  );
}

/** The Node reference servers answer for the hit and local workloads and forward for misses. */
async function startNodeRef(env: PeerEnv, name: string, script: string, workload: WorkloadName, nodeArgs: string[] = [], scriptArgs: string[] = []): Promise<Running> {
  const port = await freePort();
  const args = [...nodeArgs, join(env.root, 'dist/bench', script), '--port', String(port), ...scriptArgs];
  if (workload === 'miss') args.push('--forward', `${LOOPBACK}:${env.nsdPort}`);
  return launch(name, env.dir, port, process.execPath, args, logName(name));
}

/** How tables list the servers (runs follow the order of SERVERS). */
export const DISPLAY_ORDER: readonly string[] = ['linedns', 'linedns-base', 'linedns-admin', 'linedns-log', 'linedns-log100', 'linedns-2w', 'linedns-nomemo', 'ceiling', 'ceiling-lit', 'naive', 'dnsdist', 'unbound', 'dnsmasq', 'nsd'];

export function displayRank(name: string): number {
  const i = DISPLAY_ORDER.indexOf(name);
  return i < 0 ? DISPLAY_ORDER.length : i;
}

/** The bare Node ceiling (bench/ceiling.ts), with extra node flags (the perf profile's). */
export function startCeiling(env: PeerEnv, workload: WorkloadName, nodeArgs: string[] = [], literalLookup = false): Promise<Running> {
  return startNodeRef(env, literalLookup ? 'ceiling-lit' : 'ceiling', 'ceiling.js', workload, nodeArgs, literalLookup ? ['--literal-lookup'] : []);
}

export const SERVERS: readonly ServerSpec[] = [
  // Order matters: runs alternate forwards and backwards, so neighbours here run side by side
  // in every round (bench/run.ts): linedns sits between linedns-admin (the admin endpoint's
  // cost) and linedns-base (the A/B), the other linedns rows beside one of the ceilings.
  { name: 'linedns-2w', note: 'same, --workers 2', binary: null, workloads: ['hit'], start: (env) => startLineDns(env, { workers: 2 }) },
  { name: 'ceiling-lit', note: 'the ceiling with the literal-address lookup linedns uses (bench/ceiling.ts --literal-lookup)', binary: null, workloads: ['hit', 'local', 'miss'], start: (env, w) => startCeiling(env, w, [], true) },
  { name: 'linedns-admin', note: 'same, with the admin endpoint on (every reply counted) and /metrics scraped once a second', binary: null, workloads: ['hit'], start: (env) => startLineDns(env, { admin: { scrapeMs: 1000 } }) },
  { name: 'linedns', note: 'default pipeline, records + smart-line loaded, cache 100k', binary: null, workloads: ['hit', 'local', 'miss'], start: (env) => startLineDns(env) },
  { name: 'linedns-base', note: 'the BENCH_BASELINE checkout, configured the same', binary: null, workloads: ['hit', 'local', 'miss'], start: (env) => startLineDns(env, { baseline: true }) },
  { name: 'ceiling', note: 'bare Node: ID copied into a prebuilt reply; relays by ID for misses', binary: null, workloads: ['hit', 'local', 'miss'], start: (env, w) => startCeiling(env, w) },
  { name: 'linedns-log', note: 'same, with the log stage first: one JSON line per query to a file', binary: null, workloads: ['hit'], start: (env) => startLineDns(env, { log: { sample: 1 } }) },
  { name: 'linedns-log100', note: 'same, the log stage sampling 1 query in 100', binary: null, workloads: ['hit'], start: (env) => startLineDns(env, { log: { sample: 100 } }) },
  { name: 'linedns-nomemo', note: 'same, "answerMemo": false: every query through the whole pipeline', binary: null, workloads: ['hit', 'local'], start: (env) => startLineDns(env, { answerMemo: false }) },
  // Beside linedns-nomemo, which it differs from only by the cache's prefetch count per hit.
  { name: 'linedns-prefetch', note: 'same as linedns-nomemo, with the cache\'s "prefetch": 2 (one count per hit; refreshes at 10 % TTL left)', binary: null, workloads: ['hit'], start: (env) => startLineDns(env, { answerMemo: false, prefetch: 2 }) },
  { name: 'naive', note: 'Node + dns-packet decode/encode per packet', binary: null, workloads: ['hit', 'local', 'miss'], start: (env, w) => startNodeRef(env, 'naive', 'naive.js', w) },
  { name: 'dnsdist', note: 'packet cache 100k; local names: one QNameSetRule + SpoofAction', binary: 'dnsdist', workloads: ['hit', 'local', 'miss'], start: (env) => startDnsdist(env) },
  { name: 'unbound', note: 'forwarder, 1 thread, iterator only; local-data for local names', binary: 'unbound', workloads: ['hit', 'local', 'miss'], start: (env) => startUnbound(env) },
  { name: 'dnsmasq', note: 'cache-size 10000; addn-hosts for local names', binary: 'dnsmasq', workloads: ['hit', 'local', 'miss'], start: (env) => startDnsmasq(env) },
];

export function installed(spec: ServerSpec): boolean {
  return spec.binary === null || commandExists(spec.binary) !== null;
}

export interface ToolVersions {
  [tool: string]: string | null;
}

export function toolVersions(): ToolVersions {
  return {
    node: process.version,
    nsd: versionOf('nsd', ['-v'], /NSD version (\S+)/),
    unbound: versionOf('unbound', ['-V'], /Version (\S+)/),
    dnsdist: versionOf('dnsdist', ['--version'], /dnsdist (\S+)/),
    dnsmasq: versionOf('dnsmasq', ['--version'], /Dnsmasq version (\S+)/),
    dnsperf: versionOf('dnsperf', ['-h'], /Version (\S+)/),
  };
}
