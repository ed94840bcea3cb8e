// Summarises a V8 .cpuprofile (node --cpu-prof): self and inclusive time per function, and time
// per category (linedns, Node internals, dependencies, GC, idle). Also: node cpuprofile.js FILE.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface FunctionTime {
  name: string;
  location: string;
  category: string;
  selfMs: number;
  totalMs: number;
}

export interface ProfileSummary {
  wallMs: number;
  /** Sampled time not idle: what the server spent working. */
  busyMs: number;
  categories: Array<{ name: string; ms: number }>;
  functions: FunctionTime[];
}

function category(f: CallFrame): string {
  if (f.functionName === '(idle)') return 'idle';
  if (f.functionName === '(garbage collector)') return 'GC';
  if (f.functionName === '(program)') return 'V8/native (program)';
  if (f.url.includes('/node_modules/')) return `dependency: ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url)?.[1] ?? '?'}`;
  if (f.url.includes('/dist/src/')) return 'linedns';
  if (f.url.startsWith('node:')) return 'Node internals (JS)';
  if (f.url === '') return 'native (C++ builtins)';
  return 'other JS';
}

function location(f: CallFrame): string {
  if (f.url === '') return '';
  const short = f.url.replace(/^file:\/\/.*?\/(dist\/|node_modules\/)/, '$1');
  return `${short}:${f.lineNumber + 1}`;
}

/** Only samples between `fromMs` and `toMs` after the profile's start count (a window). */
export interface Window {
  fromMs: number;
  toMs: number;
}

export function summarise(p: CpuProfile, window: Window = { fromMs: 0, toMs: Infinity }): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const key = (f: CallFrame): string => `${f.functionName || '(anonymous)'}\u0000${location(f)}`;
  const fns = new Map<string, FunctionTime>();
  const fnOf = (f: CallFrame): FunctionTime => {
    const k = key(f);
    let t = fns.get(k);
    if (t === undefined) {
      t = { name: f.functionName || '(anonymous)', location: location(f), category: category(f), selfMs: 0, totalMs: 0 };
      fns.set(k, t);
    }
    return t;
  };
  const cats = new Map<string, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  let busy = 0;
  let at = 0;
  let first = Infinity;
  let last = 0;
  for (let i = 0; i < samples.length; i++) {
    at += (deltas[i] ?? 0) / 1000;
    if (at < window.fromMs || at > window.toMs) continue;
    first = Math.min(first, at);
    last = Math.max(last, at);
    // timeDeltas[i] is the gap before sample i; the time until the next sample belongs to it.
    const ms = (deltas[i + 1] ?? 0) / 1000;
    const node = byId.get(samples[i]!);
    if (!node) continue;
    const self = fnOf(node.callFrame);
    self.selfMs += ms;
    cats.set(self.category, (cats.get(self.category) ?? 0) + ms);
    if (self.category !== 'idle') busy += ms;
    // Inclusive time: each function on the stack once, however often it recurses.
    const seen = new Set<FunctionTime>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = fnOf(byId.get(id)!.callFrame);
      if (!seen.has(f)) {
        seen.add(f);
        f.totalMs += ms;
      }
    }
  }
  return {
    wallMs: Number.isFinite(first) ? last - first : 0,
    busyMs: busy,
    categories: [...cats].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms),
    functions: [...fns.values()].filter((f) => f.name !== '(root)').sort((a, b) => b.selfMs - a.selfMs),
  };
}

/** Function names as table cells: regexps show their whole source, so cut long ones. */
function shortName(name: string): string {
  const oneLine = name.replace(/\|/g, '\\|');
  return oneLine.length > 60 ? `${oneLine.slice(0, 57)}...` : oneLine;
}

const pct = (part: number, whole: number): string => (whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-');

/** Markdown: categories, then the top functions by self time (percentages of busy time). */
export function profileMarkdown(s: ProfileSummary, top = 20): string {
  const out: string[] = [];
  out.push(`Sampled ${(s.wallMs / 1000).toFixed(1)} s, of which ${(s.busyMs / 1000).toFixed(1)} s busy (not idle). Percentages are of busy time.`);
  out.push('');
  out.push('| category | self time | share |');
  out.push('|---|---:|---:|');
  for (const c of s.categories) if (c.name !== 'idle') out.push(`| ${c.name} | ${c.ms.toFixed(0)} ms | ${pct(c.ms, s.busyMs)} |`);
  out.push('');
  out.push('| function | where | self | inclusive |');
  out.push('|---|---|---:|---:|');
  for (const f of s.functions.filter((x) => x.category !== 'idle').slice(0, top)) {
    out.push(`| \`${shortName(f.name)}\` | ${f.location || f.category} | ${pct(f.selfMs, s.busyMs)} | ${pct(f.totalMs, s.busyMs)} |`);
  }
  const send = s.functions.filter((f) => f.name === 'doSend' && f.location.startsWith('node:dgram')).reduce((t, f) => t + f.selfMs, 0);
  if (send > 0) {
    const rest = s.busyMs - send;
    out.push('');
    out.push(`Without \`doSend\` (the kernel's send, and preemption there: ${pct(send, s.busyMs)} of busy time), the remaining ${(rest / 1000).toFixed(2)} s split as:`);
    out.push('');
    out.push('| category | share of the rest |');
    out.push('|---|---:|');
    for (const c of s.categories) {
      const ms = c.name === 'Node internals (JS)' ? c.ms - send : c.ms;
      if (c.name !== 'idle' && ms > 0) out.push(`| ${c.name} | ${pct(ms, rest)} |`);
    }
  }
  const linedns = s.functions.filter((f) => f.category === 'linedns').sort((a, b) => b.totalMs - a.totalMs).slice(0, 12);
  if (linedns.length > 0) {
    out.push('');
    out.push('linedns functions by inclusive time (what each costs with everything it calls):');
    out.push('');
    out.push('| function | where | inclusive | self |');
    out.push('|---|---|---:|---:|');
    for (const f of linedns) out.push(`| \`${shortName(f.name)}\` | ${f.location} | ${pct(f.totalMs, s.busyMs)} | ${pct(f.selfMs, s.busyMs)} |`);
  }
  return out.join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/cpuprofile.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const summary = summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  process.stdout.write(`${profileMarkdown(summary, Number(process.argv[3] ?? 25))}\n`);
}
