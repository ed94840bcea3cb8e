// What a reload must drop from the cache: the names and subtrees whose answers the new local
// data (records, zones, rewrite rules, lines) or routes may change. A pure diff of two configurations.

import { reverseName } from '../../lib/net/address.js';
import { normalizeName } from '../../lib/dns/name.js';
import type { RecordEntry, RewriteRule, RuntimeConfig } from '../../config/types.js';

/** The parts of a configuration a cached answer may depend on. */
export type PurgeInputs = Pick<RuntimeConfig, 'pipeline' | 'records' | 'zones' | 'smartLine' | 'smartLineUnmatched' | 'rewrite' | 'routes'>;

export interface Purge {
  /** Everything goes: the stages changed, so no stored answer can be trusted. */
  readonly all: boolean;
  /** Exact names (lower case, no trailing dot, as the cache keys them). */
  readonly names: ReadonlySet<string>;
  /** Apexes whose whole subtree goes, the apex included. */
  readonly subtrees: ReadonlySet<string>;
}

/** Whether `purge` drops the cache key `name`: an exact name, or one at or under a subtree. */
export function purges(purge: Purge, name: string): boolean {
  if (purge.all || purge.names.has(name)) return true;
  if (purge.subtrees.size === 0) return false;
  if (purge.subtrees.has('.')) return true;
  // Walking the name's own suffixes costs its label count, whatever the number of subtrees.
  for (let n = name; ; ) {
    if (purge.subtrees.has(n)) return true;
    const dot = n.indexOf('.');
    if (dot < 0) return false;
    n = n.slice(dot + 1);
  }
}

/** The name one label up ("." above a top-level name); null above the root. */
function parentOf(name: string): string | null {
  if (name === '.') return null;
  const dot = name.indexOf('.');
  return dot < 0 ? '.' : name.slice(dot + 1);
}

function byOwner(records: readonly RecordEntry[]): Map<string, RecordEntry[]> {
  const out = new Map<string, RecordEntry[]>();
  for (const e of records) {
    const owner = normalizeName(e.name);
    let list = out.get(owner);
    if (list === undefined) out.set(owner, (list = []));
    list.push(e);
  }
  return out;
}

function sameEntry(a: RecordEntry, b: RecordEntry): boolean {
  if (a.name !== b.name || a.type !== b.type || a.ttl !== b.ttl || a.action !== b.action) return false;
  if ((a.labels ?? []).join('\n') !== (b.labels ?? []).join('\n')) return false;
  return a.rdata === b.rdata || JSON.stringify(a.rdata) === JSON.stringify(b.rdata);
}

/**
 * The owners whose entries may differ: those of the entries between the longest common prefix
 * and suffix of the two lists. A reload usually edits a few entries of a long file, so this
 * compares each entry once, field by field, instead of grouping and serialising them all; an
 * owner outside that middle has the very same entries on both sides.
 */
function changedOwners(prev: readonly RecordEntry[], next: readonly RecordEntry[]): Set<string> {
  let head = 0;
  const max = Math.min(prev.length, next.length);
  while (head < max && sameEntry(prev[head]!, next[head]!)) head++;
  let tail = 0;
  while (tail < max - head && sameEntry(prev[prev.length - 1 - tail]!, next[next.length - 1 - tail]!)) tail++;
  const owners = new Set<string>();
  for (let i = head; i < prev.length - tail; i++) owners.add(normalizeName(prev[i]!.name));
  for (let i = head; i < next.length - tail; i++) owners.add(normalizeName(next[i]!.name));
  return owners;
}

function ruleKey(r: RewriteRule): string {
  return r.suffix ? `*.${r.from}` : r.from;
}

/** Rounds of CNAME and rewrite propagation at most: each round follows one more link. */
const MAX_ROUNDS = 16;

/**
 * The diff of `prev` and `next`: every name whose answer may differ. Conservative where the
 * exact effect is costly to work out (an ancestor that became an empty non-terminal, a name
 * under a wildcard's domain that now blocks it): a needless drop costs one upstream query.
 */
export function purgeFor(prev: PurgeInputs, next: PurgeInputs): Purge {
  const names = new Set<string>();
  const subtrees = new Set<string>();
  const stages = (c: PurgeInputs): string => JSON.stringify(c.pipeline.map((e) => e.stage));
  if (stages(prev) !== stages(next)) return { all: true, names, subtrees };

  const changed = changedOwners(prev.records, next.records);
  // Only the owners that changed, or that labels touch, need their entries gathered.
  const relevant = (c: PurgeInputs): RecordEntry[] => c.records.filter((e) => (e.labels && e.labels.length > 0) || changed.has(normalizeName(e.name)));
  const before = byOwner(relevant(prev));
  const after = byOwner(relevant(next));
  // Domains that hold a wildcard, before or after: a new owner under one of them changes which
  // names the wildcard covers (RFC 4592 closest encloser), so its whole subtree goes.
  const wildDomains = new Set<string>();
  for (const c of [prev, next]) for (const e of c.records) if (e.name.startsWith('*.')) wildDomains.add(normalizeName(e.name).slice(2));
  const underWildcard = (owner: string): boolean => {
    for (let n = parentOf(owner); n !== null; n = parentOf(n)) if (wildDomains.has(n)) return true;
    return false;
  };

  const ownerChanged = (owner: string): void => {
    const entries = [...(before.get(owner) ?? []), ...(after.get(owner) ?? [])];
    if (owner.startsWith('*.')) subtrees.add(owner.slice(2));
    // A local SOA makes records answer NXDOMAIN / NODATA for everything under it.
    else if (entries.some((e) => e.type === 'SOA') || underWildcard(owner)) subtrees.add(owner);
    else names.add(owner);
    // A new owner makes its ancestors exist (NODATA, not NXDOMAIN, under a local SOA).
    for (let n = parentOf(owner); n !== null && n !== '.'; n = parentOf(n)) names.add(n);
    // Automatic PTRs follow the A and AAAA records.
    for (const e of entries) {
      if ((e.type === 'A' || e.type === 'AAAA') && typeof e.rdata === 'string') {
        const r = reverseName(e.rdata);
        if (r !== null) names.add(r);
      }
    }
  };

  for (const owner of changed) {
    const b = before.get(owner) ?? [];
    const a = after.get(owner) ?? [];
    if (b.length !== a.length || b.some((e, i) => !sameEntry(e, a[i]!))) ownerChanged(owner);
  }

  // Zones by apex: a view added, removed or changed drops the apex's subtree.
  const zoneState = (c: PurgeInputs): Map<string, string> => {
    const out = new Map<string, string[]>();
    for (const z of c.zones) {
      const list = out.get(z.origin) ?? [];
      list.push(JSON.stringify([z.labels, z.digest]));
      out.set(z.origin, list);
    }
    return new Map([...out].map(([k, v]) => [k, v.join('\n')]));
  };
  const zb = zoneState(prev);
  const za = zoneState(next);
  for (const origin of new Set([...zb.keys(), ...za.keys()])) if (zb.get(origin) !== za.get(origin)) subtrees.add(origin);

  const ruleChanged = (r: RewriteRule): void => {
    if (r.suffix) subtrees.add(r.from).add(r.to);
    else names.add(r.from).add(r.to);
  };
  const rb = new Map(prev.rewrite.map((r) => [ruleKey(r), r]));
  const ra = new Map(next.rewrite.map((r) => [ruleKey(r), r]));
  for (const key of new Set([...rb.keys(), ...ra.keys()])) {
    const p = rb.get(key);
    const n = ra.get(key);
    if (JSON.stringify(p ?? null) === JSON.stringify(n ?? null)) continue;
    if (p) ruleChanged(p);
    if (n) ruleChanged(n);
  }

  // Routes by zone: one added, removed or changed (its lines, its upstreams) may send a name to
  // another resolver, or keep a line's clients from the one that answered before (an internal
  // resolver's answers must not outlive a route that no longer lets guests reach it). The
  // top-level upstreams are not compared: another resolver for everything is still asked again
  // once each answer's TTL runs out, as on any resolver change.
  const routeState = (c: PurgeInputs): Map<string, string> => {
    const out = new Map<string, string[]>();
    for (const r of c.routes) {
      const list = out.get(r.zone) ?? [];
      list.push(JSON.stringify(r));
      out.set(r.zone, list);
    }
    return new Map([...out].map(([k, v]) => [k, v.sort().join('\n')]));
  };
  const ob = routeState(prev);
  const oa = routeState(next);
  for (const zone of new Set([...ob.keys(), ...oa.keys()])) if (ob.get(zone) !== oa.get(zone)) subtrees.add(zone === '' ? '.' : zone);

  // Other lines, or another rule for clients in none: whatever carries labels may show or hide.
  if (JSON.stringify([prev.smartLine, prev.smartLineUnmatched]) !== JSON.stringify([next.smartLine, next.smartLineUnmatched])) {
    for (const c of [prev, next]) {
      for (const e of c.records) if (e.labels && e.labels.length > 0) ownerChanged(normalizeName(e.name));
      for (const z of c.zones) if (z.labels !== null) subtrees.add(z.origin);
      for (const r of c.rewrite) if (r.labels !== null) ruleChanged(r);
      for (const r of c.routes) if (r.labels !== null) subtrees.add(r.zone === '' ? '.' : r.zone);
    }
  }

  const purge: Purge = { all: false, names, subtrees };
  propagate(purge, names, subtrees, [prev, next]);
  return purge;
}

/**
 * An answer that went through another name goes with it: a local CNAME's owner when its target
 * is dropped (records chases and joins the chain), and a rewrite's `from` when its `to` is.
 */
function propagate(purge: Purge, names: Set<string>, subtrees: Set<string>, configs: readonly PurgeInputs[]): void {
  const cnames: Array<{ owner: string; target: string }> = [];
  for (const c of configs) {
    for (const e of c.records) if (e.type === 'CNAME' && typeof e.rdata === 'string') cnames.push({ owner: normalizeName(e.name), target: normalizeName(e.rdata) });
  }
  const rules = configs.flatMap((c) => c.rewrite);
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const size = names.size + subtrees.size;
    for (const { owner, target } of cnames) {
      if (!purges(purge, target)) continue;
      if (owner.startsWith('*.')) subtrees.add(owner.slice(2));
      else names.add(owner);
    }
    for (const r of rules) {
      if (!r.suffix) {
        if (purges(purge, r.to)) names.add(r.from);
        continue;
      }
      // The whole of `to` dropped (not only its apex): the whole of `from` goes.
      if (purges({ all: false, names: new Set(), subtrees }, r.to)) {
        subtrees.add(r.from);
        continue;
      }
      // Dropped names and subtrees under `to` map onto the same prefixes under `from`.
      const tail = `.${r.to}`;
      if (names.has(r.to)) names.add(r.from);
      for (const n of [...names]) if (n.endsWith(tail)) names.add(n.slice(0, -tail.length) + `.${r.from}`);
      for (const s of [...subtrees]) if (s.endsWith(tail)) subtrees.add(s.slice(0, -tail.length) + `.${r.from}`);
    }
    if (names.size + subtrees.size === size) return;
  }
}
