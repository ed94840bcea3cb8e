// Real DNS software for interop tests: finds dig, kdig, nsd and Unbound, runs them bounded in
// time on loopback only, parses their output, and stops the daemons it started by PID.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { buildQuery, tcpExchange, udpExchange } from './client.js';
import { freePort } from './ports.js';

// ---------------------------------------------------------------------------------------------
// Binaries and processes

/** nsd and Unbound live in sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/usr/local/bin'];

/** Absolute path of an executable, or null when it is not installed. */
export function findBinary(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d !== ''), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here; keep looking
    }
  }
  return null;
}

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a tool to completion; killed after `timeoutMs` so a hung peer cannot hang the suite. */
export function runTool(bin: string, args: readonly string[], timeoutMs = 10_000): Promise<ToolResult> {
  const start = performance.now();
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr, ms: performance.now() - start });
    });
  });
}

/** Daemons still running when the test process exits are killed, so none outlive a crash. */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) killGroup(child, 'SIGKILL');
});

/** Signals the daemon's process group: nsd forks its server and xfrd children. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export interface Daemon {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** Everything the daemon printed (its own log file is appended by `log()`). */
  log(): string;
  stop(): Promise<void>;
}

interface SpawnSpec {
  name: string;
  bin: string;
  args: string[];
  dir: string;
  port: number;
  logFile: string;
  /** A question the daemon answers (any rcode) once it is ready. */
  probe: { name: string; type: string };
  readyTimeoutMs: number;
}

async function spawnDaemon(spec: SpawnSpec): Promise<Daemon> {
  const child = spawn(spec.bin, spec.args, { cwd: spec.dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(child);
  let output = '';
  const keep = (chunk: Buffer): void => {
    if (output.length < 64 * 1024) output += chunk.toString('utf8');
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: number | string | null = null;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = code ?? signal ?? 'exit';
      running.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      exited = err.message;
      running.delete(child);
      resolve();
    });
  });
  const readLog = (): string => {
    let file = '';
    try {
      file = readFileSync(spec.logFile, 'utf8');
    } catch {
      // no log file yet
    }
    return `${output}${file}`;
  };
  const stop = async (): Promise<void> => {
    if (exited === null) {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
      await exit;
      clearTimeout(timer);
    }
    rmSync(spec.dir, { recursive: true, force: true });
  };

  // Poll until the daemon answers: bounded in attempts and in time.
  const deadline = performance.now() + spec.readyTimeoutMs;
  const probe = buildQuery(spec.probe, { id: 4242 });
  let ready = false;
  for (let attempt = 0; attempt < 200 && performance.now() < deadline && exited === null; attempt++) {
    const reply = await udpExchange(spec.port, probe, { timeoutMs: 150 });
    if (reply !== null && reply.length >= 12 && (reply[2]! & 0x80) !== 0) {
      ready = true;
      break;
    }
    await sleep(50);
  }
  if (ready) {
    // UDP first, then TCP: a daemon binding one but not the other is not ready.
    const overTcp = await tcpExchange(spec.port, [probe], { timeoutMs: 2000 });
    ready = overTcp.length === 1;
  }
  if (!ready) {
    const why = exited !== null ? `exited (${String(exited)})` : 'did not answer in time';
    await stop();
    throw new Error(`${spec.name} on 127.0.0.1:${spec.port} ${why}:\n${readLog()}`);
  }
  return { name: spec.name, port: spec.port, pid: child.pid!, dir: spec.dir, log: readLog, stop };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Retries a start on a fresh port: the port picked may be taken before the daemon binds it. */
async function withFreshPort(attempts: number, start: (port: number) => Promise<Daemon>): Promise<Daemon> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await start(await freePort());
    } catch (err) {
      last = err;
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}

// ---------------------------------------------------------------------------------------------
// nsd

export interface ZoneSpec {
  /** Zone apex without trailing dot, e.g. "interop.test". */
  origin: string;
  /** Master file text. */
  text: string;
}

/**
 * nsd serving `zones` on 127.0.0.1. Rate limiting is off (`rrl-ratelimit: 0`), or repeated
 * wildcard answers come back truncated or not at all (PITFALLS.md). `serverOptions` are more
 * lines of its server: clause, e.g. "minimal-responses: yes".
 */
export async function startNsd(zones: readonly ZoneSpec[], serverOptions: readonly string[] = []): Promise<Daemon> {
  const bin = findBinary('nsd');
  if (bin === null) throw new Error('nsd not installed');
  const checkconf = findBinary('nsd-checkconf');
  return withFreshPort(3, async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'linedns-nsd-'));
    const zoneBlocks = zones.map((z, i) => {
      writeFileSync(join(dir, `zone${i}.zone`), z.text);
      return `zone:\n  name: "${z.origin}."\n  zonefile: "zone${i}.zone"\n`;
    });
    const conf = [
      'server:',
      `  ip-address: 127.0.0.1@${port}`,
      `  port: ${port}`,
      '  do-ip4: yes',
      '  do-ip6: no',
      '  username: ""',
      `  zonesdir: "${dir}"`,
      '  database: ""',
      `  pidfile: "${dir}/nsd.pid"`,
      `  xfrdfile: "${dir}/xfrd.state"`,
      `  zonelistfile: "${dir}/zone.list"`,
      `  logfile: "${dir}/nsd.log"`,
      '  server-count: 1',
      '  rrl-ratelimit: 0',
      '  verbosity: 1',
      ...serverOptions.map((o) => `  ${o}`),
      'remote-control:',
      '  control-enable: no',
      ...zoneBlocks,
    ].join('\n');
    const confFile = join(dir, 'nsd.conf');
    writeFileSync(confFile, `${conf}\n`);
    if (checkconf !== null) {
      const r = await runTool(checkconf, [confFile]);
      if (r.code !== 0) throw new Error(`nsd-checkconf rejected the config: ${r.stdout}${r.stderr}`);
    }
    return spawnDaemon({
      name: 'nsd',
      bin,
      args: ['-d', '-c', confFile],
      dir,
      port,
      logFile: join(dir, 'nsd.log'),
      probe: { name: zones[0]?.origin ?? '.', type: 'SOA' },
      readyTimeoutMs: 8000,
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Unbound

/**
 * Unbound forwarding everything to 127.0.0.1@`forwardPort`, and nothing else: an empty
 * root-hints and a forward-zone for "." keep it on loopback, `do-not-query-localhost: no` lets
 * it ask a loopback server, and `local-zone: "test." nodefault` stops it answering .test itself.
 */
export async function startUnbound(forwardPort: number, probe: { name: string; type: string }): Promise<Daemon> {
  const bin = findBinary('unbound');
  if (bin === null) throw new Error('unbound not installed');
  const checkconf = findBinary('unbound-checkconf');
  return withFreshPort(3, async (port) => {
    const dir = mkdtempSync(join(tmpdir(), 'linedns-unbound-'));
    const conf = [
      'server:',
      `  interface: 127.0.0.1@${port}`,
      `  port: ${port}`,
      '  do-ip4: yes',
      '  do-ip6: no',
      '  do-udp: yes',
      '  do-tcp: yes',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      '  do-daemonize: no',
      '  use-syslog: no',
      `  logfile: "${dir}/unbound.log"`,
      `  pidfile: "${dir}/unbound.pid"`,
      '  root-hints: ""',
      '  auto-trust-anchor-file: ""',
      '  module-config: "iterator"',
      '  do-not-query-localhost: no',
      '  access-control: 127.0.0.0/8 allow',
      '  local-zone: "test." nodefault',
      '  num-threads: 1',
      '  so-reuseport: no',
      '  verbosity: 1',
      'remote-control:',
      '  control-enable: no',
      'forward-zone:',
      '  name: "."',
      `  forward-addr: 127.0.0.1@${forwardPort}`,
    ].join('\n');
    const confFile = join(dir, 'unbound.conf');
    writeFileSync(confFile, `${conf}\n`);
    if (checkconf !== null) {
      const r = await runTool(checkconf, [confFile]);
      if (r.code !== 0) throw new Error(`unbound-checkconf rejected the config: ${r.stdout}${r.stderr}`);
    }
    return spawnDaemon({
      name: 'unbound',
      bin,
      args: ['-d', '-c', confFile],
      dir,
      port,
      logFile: join(dir, 'unbound.log'),
      probe,
      readyTimeoutMs: 8000,
    });
  });
}

// ---------------------------------------------------------------------------------------------
// dig

export interface DigRecord {
  name: string;
  ttl: number;
  class: string;
  type: string;
  rdata: string;
}

export interface DigOption {
  /** As dig prints it: "COOKIE", "CLIENT-SUBNET", "OPT=100", ... */
  name: string;
  code: number | null;
  text: string;
}

export interface DigEdns {
  version: number;
  flags: string[];
  /** Undefined EDNS flag bits the responder set (dig's "MBZ"), 0 when none. */
  mbz: number;
  udp: number;
  options: DigOption[];
}

export interface DigReply {
  opcode: string;
  status: string;
  id: number;
  flags: Set<string>;
  /** Header Z bit as dig reports it ("MBZ" on the flags line), 0 when clear. */
  headerMbz: number;
  counts: { query: number; answer: number; authority: number; additional: number };
  edns: DigEdns | null;
  question: { name: string; class: string; type: string }[];
  answer: DigRecord[];
  authority: DigRecord[];
  additional: DigRecord[];
  /** "UDP" or "TCP", from the SERVER line. */
  transport: string | null;
  size: number | null;
}

const OPTION_CODES: Record<string, number> = {
  LLQ: 1,
  UL: 2,
  NSID: 3,
  DAU: 5,
  DHU: 6,
  N3U: 7,
  'CLIENT-SUBNET': 8,
  EXPIRE: 9,
  COOKIE: 10,
  'TCP-KEEPALIVE': 11,
  PADDING: 12,
  CHAIN: 13,
  'KEY-TAG': 14,
  EDE: 15,
};

function parseRecord(line: string): DigRecord | null {
  const parts = line.trim().split(/\s+/);
  if (parts.length < 4) return null;
  const [name, ttl, klass, type, ...rest] = parts as [string, string, string, string, ...string[]];
  if (!/^\d+$/.test(ttl)) return null;
  return { name, ttl: Number(ttl), class: klass, type, rdata: rest.join(' ') };
}

type DigSection = 'none' | 'opt' | 'question' | 'answer' | 'authority' | 'additional';

/** Splits dig's default output into replies (one per "->>HEADER<<-") and parses each. */
export function parseDig(text: string): DigReply[] {
  const out: DigReply[] = [];
  let cur: DigReply | null = null;
  let section: DigSection = 'none';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const header = /^;; ->>HEADER<<- opcode: ([A-Z0-9]+), status: ([A-Z0-9]+), id: (\d+)/.exec(line);
    if (header) {
      cur = {
        opcode: header[1]!,
        status: header[2]!,
        id: Number(header[3]),
        flags: new Set(),
        headerMbz: 0,
        counts: { query: 0, answer: 0, authority: 0, additional: 0 },
        edns: null,
        question: [],
        answer: [],
        authority: [],
        additional: [],
        transport: null,
        size: null,
      };
      out.push(cur);
      section = 'none';
      continue;
    }
    if (cur === null) continue;
    const flags = /^;; flags:([^;]*);(.*)$/.exec(line);
    if (flags) {
      for (const f of flags[1]!.trim().split(/\s+/)) if (f !== '') cur.flags.add(f);
      const mbz = /MBZ: 0x([0-9a-fA-F]+)/.exec(flags[2]!);
      if (mbz) cur.headerMbz = parseInt(mbz[1]!, 16);
      const c = /QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/.exec(flags[2]!);
      if (c) cur.counts = { query: Number(c[1]), answer: Number(c[2]), authority: Number(c[3]), additional: Number(c[4]) };
      continue;
    }
    const edns = /^; EDNS: version: (\d+), flags:([^;]*);(?: MBZ: 0x([0-9a-fA-F]+),)? udp: (\d+)/.exec(line);
    if (edns) {
      cur.edns = {
        version: Number(edns[1]),
        flags: edns[2]!.trim().split(/\s+/).filter((f) => f !== ''),
        mbz: edns[3] ? parseInt(edns[3], 16) : 0,
        udp: Number(edns[4]),
        options: [],
      };
      section = 'opt';
      continue;
    }
    const sectionHead = /^;; (QUESTION|ANSWER|AUTHORITY|ADDITIONAL) SECTION:/.exec(line);
    if (sectionHead) {
      section = sectionHead[1]!.toLowerCase() as DigSection;
      continue;
    }
    const size = /^;; MSG SIZE\s+rcvd: (\d+)/.exec(line);
    if (size) {
      cur.size = Number(size[1]);
      continue;
    }
    const server = /^;; SERVER: .*\((UDP|TCP)\)\s*$/.exec(line);
    if (server) {
      cur.transport = server[1]!;
      continue;
    }
    if (line.trim() === '') {
      if (section === 'opt') section = 'none';
      continue;
    }
    if (section === 'opt' && line.startsWith('; ') && !line.startsWith(';; ')) {
      const m = /^; ([A-Z0-9=-]+)(?::\s*(.*))?$/.exec(line);
      if (m) {
        const name = m[1]!;
        const numbered = /^OPT=(\d+)$/.exec(name);
        cur.edns!.options.push({ name, code: numbered ? Number(numbered[1]) : (OPTION_CODES[name] ?? null), text: m[2] ?? '' });
      }
      continue;
    }
    if (section === 'question' && line.startsWith(';') && !line.startsWith(';;')) {
      const parts = line.slice(1).trim().split(/\s+/);
      if (parts.length >= 3) cur.question.push({ name: parts[0]!, class: parts[1]!, type: parts[2]! });
      continue;
    }
    if ((section === 'answer' || section === 'authority' || section === 'additional') && !line.startsWith(';')) {
      const rec = parseRecord(line);
      if (rec) cur[section].push(rec);
    }
  }
  return out;
}

/** dig against a loopback server: one try, two seconds, so a silent server fails fast. */
export async function dig(port: number, args: readonly string[], opts: { server?: string } = {}): Promise<{ reply: DigReply; result: ToolResult }> {
  const bin = findBinary('dig');
  if (bin === null) throw new Error('dig not installed');
  const result = await runTool(bin, [`@${opts.server ?? '127.0.0.1'}`, '-p', String(port), '+time=2', '+tries=1', '+retry=0', ...args]);
  const replies = parseDig(result.stdout);
  const reply = replies[replies.length - 1];
  if (reply === undefined) throw new Error(`dig ${args.join(' ')} (exit ${result.code}) printed no reply:\n${result.stdout}${result.stderr}`);
  return { reply, result };
}

// ---------------------------------------------------------------------------------------------
// kdig (+json, RFC 8427)

export interface KdigRecord {
  NAME: string;
  TYPE: number;
  TYPEname?: string;
  CLASS: number;
  TTL: number;
  RDLENGTH: number;
  RDATAHEX?: string;
}

export interface KdigMessage {
  ID: number;
  QR: number;
  Opcode: number;
  AA: number;
  TC: number;
  RD: number;
  RA: number;
  AD: number;
  CD: number;
  RCODE: number;
  QDCOUNT: number;
  ANCOUNT: number;
  NSCOUNT: number;
  ARCOUNT: number;
  QNAME?: string;
  QTYPE?: number;
  msgLength?: number;
  answerRRs: KdigRecord[];
  authorityRRs: KdigRecord[];
  additionalRRs: KdigRecord[];
}

/** Cuts concatenated top-level JSON objects apart (kdig prints one per reply). */
export function splitJsonObjects(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"' && depth > 0) inString = true;
    else if (c === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (c === '}' && depth > 0) {
      depth--;
      if (depth === 0) out.push(text.slice(start, i + 1));
    }
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function num(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (typeof v !== 'number') throw new Error(`kdig JSON: ${key} is not a number`);
  return v;
}

function records(o: Record<string, unknown>, key: string): KdigRecord[] {
  const list = o[key];
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new Error(`kdig JSON: ${key} is not a list`);
  return list.map((r: unknown) => {
    if (!isRecord(r) || typeof r.NAME !== 'string') throw new Error(`kdig JSON: a record of ${key} has no NAME`);
    return {
      NAME: r.NAME,
      TYPE: num(r, 'TYPE'),
      TYPEname: typeof r.TYPEname === 'string' ? r.TYPEname : undefined,
      CLASS: num(r, 'CLASS'),
      TTL: num(r, 'TTL'),
      RDLENGTH: num(r, 'RDLENGTH'),
      RDATAHEX: typeof r.RDATAHEX === 'string' ? r.RDATAHEX : undefined,
    };
  });
}

export function parseKdigJson(text: string): KdigMessage[] {
  return splitJsonObjects(text).map((s) => {
    const o: unknown = JSON.parse(s);
    if (!isRecord(o)) throw new Error('kdig JSON: not an object');
    const keys = ['ID', 'QR', 'Opcode', 'AA', 'TC', 'RD', 'RA', 'AD', 'CD', 'RCODE', 'QDCOUNT', 'ANCOUNT', 'NSCOUNT', 'ARCOUNT'] as const;
    const header = Object.fromEntries(keys.map((k) => [k, num(o, k)])) as Record<(typeof keys)[number], number>;
    return {
      ...header,
      QNAME: typeof o.QNAME === 'string' ? o.QNAME : undefined,
      QTYPE: typeof o.QTYPE === 'number' ? o.QTYPE : undefined,
      msgLength: typeof o.msgLength === 'number' ? o.msgLength : undefined,
      answerRRs: records(o, 'answerRRs'),
      authorityRRs: records(o, 'authorityRRs'),
      additionalRRs: records(o, 'additionalRRs'),
    };
  });
}

/**
 * kdig against a loopback server with +json. Options before the first name apply to every
 * query of the invocation, so `args` is [global options..., name, type, name, type, ...].
 */
export async function kdig(port: number, args: readonly string[]): Promise<{ replies: KdigMessage[]; result: ToolResult }> {
  const bin = findBinary('kdig');
  if (bin === null) throw new Error('kdig not installed');
  const result = await runTool(bin, ['@127.0.0.1', '-p', String(port), '+time=2', '+retry=0', '+json', ...args]);
  return { replies: parseKdigJson(result.stdout), result };
}

/** EDNS option codes carried in a kdig OPT record's RDATA. */
export function kdigOptionCodes(opt: KdigRecord): number[] {
  const hex = opt.RDATAHEX ?? '';
  const bytes = Buffer.from(hex, 'hex');
  const codes: number[] = [];
  for (let o = 0; o + 4 <= bytes.length && codes.length < 64; ) {
    codes.push(bytes.readUInt16BE(o));
    o += 4 + bytes.readUInt16BE(o + 2);
  }
  return codes;
}

// ---------------------------------------------------------------------------------------------
// Comparing answers

/** Canonical text of a record for set comparison: TTL left out, case folded except in TXT. */
export function recordKey(r: DigRecord): string {
  const rdata = r.type === 'TXT' ? r.rdata : r.rdata.toLowerCase();
  return `${r.name.toLowerCase()} ${r.class} ${r.type} ${rdata}`;
}

export function recordSet(list: readonly DigRecord[]): string[] {
  return list.map(recordKey).sort();
}
