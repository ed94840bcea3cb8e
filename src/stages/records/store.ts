// Local data from records.json: exact names, RFC 4592 wildcards, CNAME chains, automatic PTR,
// deny/nxdomain actions, and local zones (an SOA makes everything below it answered locally).

import { QType, Rcode, typeFromName, typeName } from '../../lib/dns/constants.js';
import { isSubdomain, normalizeName, parentName } from '../../lib/dns/name.js';
import { reverseName } from '../../lib/net/address.js';
import { NameFilter } from './filter.js';
import type { LineSet } from '../../core/views.js';
import type { RecordEntry } from '../../config/types.js';

export const DEFAULT_RECORD_TTL = 300;

export interface LocalRecord {
  /** Normalised owner name ("*.apps.example" for a wildcard). */
  owner: string;
  type: number;
  ttl: number;
  /** RDATA in dns-packet's shape for the type. */
  data: unknown;
  /** null: visible to every client. */
  labels: readonly string[] | null;
}

/** The records of one owner name. Parallel arrays, not a Map: most names hold one or two
 *  types, and 200k Maps cost a noticeable part of start-up with a 100k-record file. */
class NameNode {
  readonly types: number[] = [];
  readonly sets: LocalRecord[][] = [];
  action: 'deny' | 'nxdomain' | null = null;

  get(type: number): LocalRecord[] | undefined {
    const i = this.types.indexOf(type);
    return i < 0 ? undefined : this.sets[i];
  }

  add(rec: LocalRecord): void {
    const set = this.get(rec.type);
    if (set) set.push(rec);
    else {
      this.types.push(rec.type);
      this.sets.push([rec]);
    }
  }
}

/** One record to put on the wire, with its owner as it must appear. */
export interface AnswerRecord {
  name: string;
  record: LocalRecord;
}

export type LocalResult =
  | { kind: 'none' }
  | { kind: 'action'; rcode: number; authority: AnswerRecord[] }
  | { kind: 'answer'; rcode: number; answers: AnswerRecord[]; authority: AnswerRecord[] }
  /**
   * A CNAME chain (`answers`, QNAME first) whose last target has no local data the question's
   * type could be answered from: the name is not ours (no record, wildcard or zone covers it,
   * or none this client sees), so the answer for `target` is the rest of the pipeline's to give.
   */
  | { kind: 'chase'; answers: AnswerRecord[]; target: string }
  /** A CNAME chain that loops or has more than MAX_CHAIN links: no answer can be given. */
  | { kind: 'broken'; reason: string };

const NONE: LocalResult = { kind: 'none' };
/** Local CNAME links followed at most; one more is a broken chain (SERVFAIL, as Unbound). */
export const MAX_CHAIN = 8;

/** Visibility of records for one client: see docs/smart-line.md. */
export interface Visibility {
  lines: LineSet | null;
  unmatched: 'all' | 'unlabelled';
  /**
   * Set by lookup when an RRset it looked at holds labelled records. A lookup for another view
   * takes the same path until the first RRset whose visible part differs, and only a labelled
   * RRset can differ: so when a lookup leaves this false, every view gets the same result.
   */
  labelled?: boolean;
}

function rdataFor(type: number, rdata: unknown): unknown {
  switch (type) {
    case QType.CNAME:
    case QType.NS:
    case QType.PTR:
      return normalizeName(rdata as string);
    case QType.TXT:
      return Array.isArray(rdata) ? rdata : [rdata];
    case QType.MX: {
      const mx = rdata as { preference: number; exchange: string };
      return { preference: mx.preference, exchange: normalizeName(mx.exchange) };
    }
    case QType.SRV: {
      const srv = rdata as { priority: number; weight: number; port: number; target: string };
      return { ...srv, target: normalizeName(srv.target) };
    }
    case QType.CAA: {
      const caa = rdata as { flags?: number; tag: string; value: string };
      return { flags: caa.flags ?? 0, tag: caa.tag, value: caa.value };
    }
    case QType.SOA: {
      const soa = rdata as Record<string, unknown>;
      return { ...soa, mname: normalizeName(soa.mname as string), rname: normalizeName(soa.rname as string) };
    }
    default:
      return rdata;
  }
}

export class RecordStore {
  private readonly names = new Map<string, NameNode>();
  /** Every owner and all its ancestors: what "exists" for closest-encloser matching. */
  private readonly existing = new Set<string>();
  /** Every name in `existing`: most questions are for names with no local data at all, and
   *  this answers "not here" for them without probing the Maps (see bench: cache hits). */
  private readonly filter: NameFilter;
  /** Owners of local SOAs: names at or below them are answered locally (NODATA/NXDOMAIN). */
  private readonly zones: string[] = [];
  private readonly hasWildcards: boolean;
  readonly size: number;
  /** The entries whose automatic PTRs are still to be built (on the first .arpa question). */
  private pendingPtr: readonly RecordEntry[] | null;

  constructor(entries: readonly RecordEntry[]) {
    // Owners, their ancestors and reverse names: about three names per entry at most.
    this.filter = new NameFilter(entries.length * 3);
    let wild = false;
    for (const e of entries) {
      const owner = normalizeName(e.name);
      if (owner.startsWith('*.')) wild = true;
      const node = this.node(owner);
      if (e.action) {
        node.action = e.action;
        continue;
      }
      const type = typeFromName(e.type!)!;
      const rec: LocalRecord = {
        owner,
        type,
        ttl: e.ttl ?? DEFAULT_RECORD_TTL,
        data: rdataFor(type, e.rdata),
        labels: e.labels && e.labels.length > 0 ? e.labels : null,
      };
      node.add(rec);
      if (type === QType.SOA && !owner.startsWith('*.')) this.zones.push(owner);
    }
    this.hasWildcards = wild;
    this.zones.sort((a, b) => b.length - a.length);
    this.size = entries.length;
    // Half the start-up of a large file is its reverse names. They can wait for the first .arpa
    // question: only names under .arpa (wildcards and zones there too) depend on them, and
    // mayAnswer and lookup both build them before looking at such a name.
    this.pendingPtr = entries;
  }

  private ensurePtr(name: string): void {
    if (this.pendingPtr === null || !name.endsWith('.arpa')) return;
    const entries = this.pendingPtr;
    this.pendingPtr = null;
    this.addAutomaticPtr(entries);
  }

  private node(owner: string): NameNode {
    let node = this.names.get(owner);
    if (node === undefined) {
      node = new NameNode();
      this.names.set(owner, node);
      // A name already known brings its ancestors with it: stop there (start-up with 100k records).
      for (let n: string | null = owner; n !== null && !this.existing.has(n); n = parentName(n)) {
        this.existing.add(n);
        this.filter.add(n);
      }
    }
    return node;
  }

  /** PTR for each local A/AAAA, unless records.json already gives that reverse name a PTR. */
  private addAutomaticPtr(entries: readonly RecordEntry[]): void {
    const explicit = new Set<string>();
    for (const [name, node] of this.names) if (node.get(QType.PTR) !== undefined) explicit.add(name);
    for (const e of entries) {
      if ((e.type !== 'A' && e.type !== 'AAAA') || e.name.startsWith('*')) continue;
      const rev = reverseName(e.rdata as string);
      if (rev === null || explicit.has(rev)) continue;
      const owner = normalizeName(e.name);
      const node = this.node(rev);
      const existingPtr = node.get(QType.PTR);
      if (existingPtr?.some((r) => r.data === owner && sameLabels(r.labels, e.labels))) continue;
      node.add({ owner: rev, type: QType.PTR, ttl: e.ttl ?? DEFAULT_RECORD_TTL, data: owner, labels: e.labels && e.labels.length > 0 ? e.labels : null });
    }
  }

  /** Cheap pre-check on the hot path: could local data say anything about this name? */
  mayAnswer(name: string): boolean {
    if (this.filter.mayContain(name) && this.names.has(name)) return true;
    if (this.pendingPtr !== null && name.endsWith('.arpa')) {
      this.ensurePtr(name);
      if (this.names.has(name)) return true;
    }
    if (!this.hasWildcards && this.zones.length === 0) return false;
    for (const z of this.zones) if (isSubdomain(name, z)) return true;
    return this.hasWildcards && this.wildcardFor(name) !== null;
  }

  /** RFC 4592: the wildcard child of the closest encloser, if one exists. */
  private wildcardFor(name: string): NameNode | null {
    for (let n = parentName(name); n !== null; n = parentName(n)) {
      if (this.filter.mayContain(n) && this.existing.has(n)) return this.names.get(n === '.' ? '*' : `*.${n}`) ?? null;
    }
    return null;
  }

  private zoneOf(name: string): string | null {
    for (const z of this.zones) if (isSubdomain(name, z)) return z;
    return null;
  }

  private soaAuthority(zone: string | null, vis: Visibility): AnswerRecord[] {
    if (zone === null) return [];
    const soa = visible(this.names.get(zone)?.get(QType.SOA), vis);
    if (soa.length === 0) return [];
    const rec = soa[0]!;
    // RFC 2308 section 3: the SOA of a negative answer carries min(TTL, MINIMUM).
    const minimum = (rec.data as { minimum: number }).minimum;
    return [{ name: zone, record: { ...rec, ttl: Math.min(rec.ttl, minimum) } }];
  }

  /**
   * For `explain`: each record of the name (or its wildcard) of the type asked or CNAME, with its
   * labels and whether the view `vis` sees it.
   */
  explain(qname: string, qtype: number, vis: Visibility): string[] {
    let node = this.names.get(qname);
    if (node === undefined && this.hasWildcards) node = this.wildcardFor(qname) ?? undefined;
    if (node === undefined) return [];
    const out: string[] = [];
    for (let i = 0; i < node.types.length; i++) {
      const type = node.types[i]!;
      if (type !== qtype && type !== QType.CNAME && qtype !== QType.ANY) continue;
      const set = node.sets[i]!;
      const seen = visible(set, { ...vis });
      for (const r of set) {
        const labels = r.labels === null ? 'no labels' : `labels [${r.labels.join(', ')}]`;
        out.push(`${r.owner} ${typeName(r.type)} ${JSON.stringify(r.data)} (${labels}): ${seen.includes(r) ? 'visible' : 'hidden'}`);
      }
    }
    return out;
  }

  /** Resolves a question against local data as the client with visibility `vis` sees it. */
  lookup(qname: string, qtype: number, vis: Visibility): LocalResult {
    this.ensurePtr(qname);
    const answers: AnswerRecord[] = [];
    const seen = new Set<string>();
    let name = qname;
    for (;;) {
      let node = this.names.get(name);
      if (node === undefined && this.hasWildcards) node = this.wildcardFor(name) ?? undefined;
      const zone = this.zoneOf(name);
      if (node === undefined) {
        // A target outside local data: its answer is the rest of the pipeline's. Inside a
        // local zone it is ours, and the chain ends here as it always did.
        if (answers.length > 0) return zone === null ? { kind: 'chase', answers, target: name } : { kind: 'answer', rcode: Rcode.NOERROR, answers, authority: [] };
        // Inside a local zone a missing name is NXDOMAIN, unless it is an empty non-terminal.
        if (zone !== null) {
          const rcode = this.existing.has(name) ? Rcode.NOERROR : Rcode.NXDOMAIN;
          return { kind: 'answer', rcode, answers, authority: this.soaAuthority(zone, vis) };
        }
        return NONE;
      }
      if (node.action !== null && answers.length === 0) {
        return { kind: 'action', rcode: node.action === 'deny' ? Rcode.REFUSED : Rcode.NXDOMAIN, authority: node.action === 'nxdomain' ? this.soaAuthority(zone, vis) : [] };
      }
      const cname = qtype !== QType.CNAME ? visible(node.get(QType.CNAME), vis) : [];
      if (cname.length > 0) {
        const rec = cname[0]!;
        answers.push({ name, record: rec });
        seen.add(name);
        const target = rec.data as string;
        if (seen.has(target)) return { kind: 'broken', reason: `CNAME loop at ${target}` };
        if (answers.length > MAX_CHAIN) return { kind: 'broken', reason: `CNAME chain longer than ${MAX_CHAIN}` };
        name = target;
        continue;
      }
      const found =
        qtype === QType.ANY
          ? node.sets.flatMap((set) => visible(set, vis))
          : visible(node.get(qtype), vis);
      if (found.length > 0) {
        for (const record of found) answers.push({ name, record });
        return { kind: 'answer', rcode: Rcode.NOERROR, answers, authority: [] };
      }
      // NODATA when the name is ours: inside a local zone, or asked for the other address family
      // of a name whose addresses we override (so a public AAAA cannot leak past a private A).
      const addressFamily = qtype === QType.A || qtype === QType.AAAA;
      const ownsAddresses =
        addressFamily &&
        (visible(node.get(QType.A), vis).length > 0 || visible(node.get(QType.AAAA), vis).length > 0);
      if (answers.length > 0) {
        // The chain's target, asked itself, would go on (records falls through for it): so
        // does the chain. A target that is ours (a zone, our addresses) or carries an action
        // ends the chain here, so a chase never reaches upstream for a name deny blocks.
        if (zone === null && !ownsAddresses && node.action === null) return { kind: 'chase', answers, target: name };
        return { kind: 'answer', rcode: Rcode.NOERROR, answers, authority: [] };
      }
      if (zone !== null || ownsAddresses) {
        return { kind: 'answer', rcode: Rcode.NOERROR, answers, authority: this.soaAuthority(zone, vis) };
      }
      return NONE;
    }
  }
}

function sameLabels(a: readonly string[] | null, b: readonly string[] | undefined): boolean {
  const bb = b && b.length > 0 ? b : null;
  if (a === null || bb === null) return a === bb;
  return a.length === bb.length && a.every((l) => bb.includes(l));
}

/**
 * The records of one RRset a client sees: unlabelled ones always; of the labelled ones, those
 * of the client's most specific line that has any here (longest prefix wins). A client in no
 * line sees everything ("all", Pipy's behaviour) or only unlabelled records ("unlabelled").
 */
export function visible(set: readonly LocalRecord[] | undefined, vis: Visibility): LocalRecord[] {
  if (set === undefined) return [];
  if (vis.labelled !== true) for (const r of set) if (r.labels !== null) vis.labelled = true;
  const lines = vis.lines;
  if (lines === null || (lines.lines.length === 0 && vis.unmatched === 'all')) return set as LocalRecord[];
  const out: LocalRecord[] = [];
  for (const r of set) if (r.labels === null) out.push(r);
  for (const line of lines.lines) {
    let any = false;
    for (const r of set) {
      if (r.labels !== null && r.labels.includes(line)) {
        out.push(r);
        any = true;
      }
    }
    if (any) break;
  }
  return out;
}
