// The zones of linedns.json in memory: per zone its names (with empty non-terminals), its cuts and
// its SOA; lookup by RFC 1034 4.3.2 with RFC 4592 wildcards; and the choice of zone per view.

import { QType, Rcode } from '../../lib/dns/constants.js';
import { isSubdomain, keyToWire, parentName, readName } from '../../lib/dns/name.js';
import type { LineSet } from '../../core/views.js';
import type { ZoneConfig } from '../../config/types.js';

/** One resource record of a zone, its RDATA as the zone file gave it (wire, uncompressed). */
export interface ZoneRR {
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Buffer;
}

/** A record to write: its owner as it must appear, and the TTL to give it. */
export interface Placed {
  readonly owner: string;
  readonly type: number;
  readonly ttl: number;
  readonly rdata: Buffer;
}

export type ZoneResult =
  /** The name is at or below a zone cut: another server's; the next stage answers. */
  | { readonly kind: 'delegated'; readonly cut: string }
  | { readonly kind: 'answer'; readonly rcode: number; readonly answers: readonly Placed[]; readonly authority: readonly Placed[] };

/** DS (RFC 4034): asked at a cut, it is the parent's. Not in constants.ts, which lists the types linedns writes. */
const TYPE_DS = 43;
/** CNAMEs (and DNAMEs) followed in one answer at most (a loop is stopped earlier, on the first repeat). */
const MAX_CHAIN = 8;
/** YXDOMAIN: a DNAME substitution made a name too long (RFC 6672 2.2). Not in constants.ts's Rcode. */
const RCODE_YXDOMAIN = 6;

/**
 * The records of one owner, all types together: most owners hold one or two records, and one
 * array a name (rather than a Map or parallel arrays of RRsets) keeps 100,000 names small.
 * Answers are memoised by the stage, so the scan by type runs once per name and type.
 */
type Node = readonly ZoneRR[];

function ofType(node: Node, type: number): ZoneRR[] {
  const out: ZoneRR[] = [];
  for (const rr of node) if (rr.type === type) out.push(rr);
  return out;
}

/**
 * RDATA as a Buffer: under --workers the configuration reaches a worker as JSON, where a Buffer
 * arrives as { type: 'Buffer', data: [...] }.
 */
function octets(rdata: unknown): Buffer {
  if (Buffer.isBuffer(rdata)) return rdata;
  const data = (rdata as { data?: unknown }).data;
  if (Array.isArray(data)) return Buffer.from(data as number[]);
  throw new Error('zone RDATA is neither a Buffer nor its JSON form');
}

/** One zone: what the loader checked (an SOA at the apex, every name inside, CNAMEs alone). */
export class Zone {
  private readonly names = new Map<string, Node>();
  /** Every owner and its ancestors up to the apex: what exists, empty non-terminals included. */
  private readonly existing = new Set<string>();
  /** Owners of NS records below the apex: the zone's cuts. */
  private readonly cuts = new Set<string>();
  /** DNAME records by owner (RFC 6672): every name below an owner is redirected. */
  private readonly dnames = new Map<string, ZoneRR>();
  private readonly soa: Placed;
  readonly size: number;

  constructor(readonly index: number, readonly origin: string, readonly labels: readonly string[] | null, config: ZoneConfig) {
    for (const r of config.records) {
      // The loader's records serve as they are (name, type, ttl, rdata); only JSON's copy is rebuilt.
      const rr: ZoneRR = Buffer.isBuffer(r.rdata) ? r : { type: r.type, ttl: r.ttl, rdata: octets(r.rdata) };
      const node = this.names.get(r.name);
      if (node !== undefined) (node as ZoneRR[]).push(rr);
      else {
        this.names.set(r.name, [rr]);
        // Ancestors up to the apex (the loader refused names outside it); a known name ends the walk.
        for (let n: string | null = r.name; n !== null && !this.existing.has(n); n = n === origin ? null : parentName(n)) this.existing.add(n);
      }
      if (r.type === QType.NS && r.name !== origin) this.cuts.add(r.name);
      if (r.type === QType.DNAME && !this.dnames.has(r.name)) this.dnames.set(r.name, rr);
    }
    const node = this.names.get(origin);
    const soa = node === undefined ? undefined : ofType(node, QType.SOA)[0];
    if (soa === undefined) throw new Error(`zone ${origin}: no SOA at the apex`);
    // RFC 2308 section 3: the SOA of a negative answer carries min(TTL, MINIMUM).
    const minimum = soa.rdata.readUInt32BE(soa.rdata.length - 4);
    this.soa = { owner: origin, type: QType.SOA, ttl: Math.min(soa.ttl, minimum), rdata: soa.rdata };
    this.size = config.records.length;
  }

  /**
   * The cut at or above `name` (below the apex), or null. A DS question at the cut itself is the
   * parent's (RFC 4035 3.1.4.1), so then only cuts above it count.
   */
  private cutAbove(name: string, qtype: number): string | null {
    if (this.cuts.size === 0) return null;
    for (let n: string | null = name; n !== null && n !== this.origin; n = parentName(n)) {
      if (this.cuts.has(n) && !(n === name && qtype === TYPE_DS)) return n;
    }
    return null;
  }

  /** RFC 4592: the source of synthesis, the wildcard child of the closest encloser, if any. */
  private wildcardFor(name: string): Node | undefined {
    for (let n = parentName(name); n !== null; n = parentName(n)) {
      if (this.existing.has(n)) return this.names.get(`*.${n}`);
    }
    return undefined;
  }

  /** The DNAME owner closest above `name` (strictly: a DNAME does not apply to its own owner), or null. */
  private dnameAbove(name: string): string | null {
    if (this.dnames.size === 0) return null;
    for (let n = parentName(name); n !== null; n = n === this.origin ? null : parentName(n)) {
      if (this.dnames.has(n)) return n;
    }
    return null;
  }

  private answer(rcode: number, answers: Placed[], negative: boolean): ZoneResult {
    return { kind: 'answer', rcode, answers, authority: negative ? [this.soa] : [] };
  }

  /** Answers `qname` (inside this zone) and `qtype` by RFC 1034 4.3.2 step 3, from this zone alone. */
  lookup(qname: string, qtype: number): ZoneResult {
    const answers: Placed[] = [];
    const seen = new Set<string>();
    let name = qname;
    for (let step = 0; step <= MAX_CHAIN; step++) {
      // A chain that leaves the zone, or enters a delegation, is returned as it stands: the
      // client's resolver goes on from its last target.
      if (step > 0 && !isSubdomain(name, this.origin)) break;
      const cut = this.cutAbove(name, qtype);
      if (cut !== null) {
        if (step === 0) return { kind: 'delegated', cut };
        break;
      }
      const redirect = this.dnameAbove(name);
      if (redirect !== null) {
        // RFC 6672 3.2: the DNAME, then a CNAME synthesized from it (the DNAME's TTL), then on
        // with the new name, in this zone if it is here.
        const dname = this.dnames.get(redirect)!;
        answers.push({ owner: redirect, type: QType.DNAME, ttl: dname.ttl, rdata: dname.rdata });
        const target = readName(dname.rdata, 0, false)!.name;
        const prefix = name.slice(0, name.length - redirect.length - (redirect === '.' ? 0 : 1));
        const next = target === '.' ? prefix : `${prefix}.${target}`;
        let wire: Buffer;
        try {
          wire = keyToWire(next);
        } catch {
          // Longer than 255 octets once substituted: YXDOMAIN with the DNAME alone (RFC 6672 2.2).
          return this.answer(RCODE_YXDOMAIN, answers, false);
        }
        answers.push({ owner: name, type: QType.CNAME, ttl: dname.ttl, rdata: wire });
        seen.add(name);
        if (seen.has(next)) break;
        name = next;
        continue;
      }
      let node = this.names.get(name);
      if (node === undefined) {
        // An empty non-terminal exists and has no data: NODATA, never a wildcard's (RFC 4592 2.2.2).
        if (this.existing.has(name)) return this.answer(Rcode.NOERROR, answers, true);
        node = this.wildcardFor(name);
        // RFC 6604: the RCODE is about the last name of the chain.
        if (node === undefined) return this.answer(Rcode.NXDOMAIN, answers, true);
      }
      const cname = qtype === QType.CNAME ? undefined : node.find((rr) => rr.type === QType.CNAME);
      if (cname !== undefined) {
        answers.push({ owner: name, type: QType.CNAME, ttl: cname.ttl, rdata: cname.rdata });
        seen.add(name);
        const target = readName(cname.rdata, 0, false)!.name;
        if (seen.has(target)) break;
        name = target;
        continue;
      }
      const before = answers.length;
      for (const rr of qtype === QType.ANY ? node : ofType(node, qtype)) answers.push({ owner: name, type: rr.type, ttl: rr.ttl, rdata: rr.rdata });
      // Nothing of the type here: NODATA, after whatever chain led here.
      return this.answer(Rcode.NOERROR, answers, answers.length === before);
    }
    return this.answer(Rcode.NOERROR, answers, false);
  }
}

/** What find() decided: the zone to answer from (or none), and whether a view decided it. */
export interface ZoneChoice {
  zone: Zone | null;
  /** A labelled zone was looked at (shown or hidden): the outcome is this view's alone. */
  byView: boolean;
}

/** Every zone, by apex; several for one apex when they are views (labelled). */
export class ZoneSet {
  private readonly byOrigin = new Map<string, Zone[]>();
  readonly zones: readonly Zone[];
  readonly records: number;

  constructor(configs: readonly ZoneConfig[]) {
    this.zones = configs.map((c, i) => new Zone(i, c.origin, c.labels, c));
    for (const z of this.zones) {
      const list = this.byOrigin.get(z.origin);
      if (list === undefined) this.byOrigin.set(z.origin, [z]);
      else list.push(z);
    }
    this.records = this.zones.reduce((n, z) => n + z.size, 0);
  }

  get empty(): boolean {
    return this.zones.length === 0;
  }

  /**
   * The closest enclosing zone `name` is in that this client sees. `client.lines` is read only
   * when a labelled zone is on the way (so the client is classified only then). At one apex a zone
   * labelled with the client's most specific line wins, then its next line, then the
   * unlabelled zone; one hidden from the client leaves the name to a zone further up, if any.
   */
  find(name: string, client: { readonly lines: LineSet | null }): ZoneChoice {
    let byView = false;
    for (let n: string | null = name; n !== null; n = parentName(n)) {
      const list = this.byOrigin.get(n);
      if (list === undefined) continue;
      if (list.length === 1 && list[0]!.labels === null) return { zone: list[0]!, byView };
      byView = true;
      const view = client.lines;
      if (view !== null) {
        for (const line of view.lines) {
          for (const z of list) if (z.labels !== null && z.labels.includes(line)) return { zone: z, byView };
        }
      }
      for (const z of list) if (z.labels === null) return { zone: z, byView };
    }
    return { zone: null, byView };
  }
}
