// In-process counters: every drop, error and answer source is counted here.
// Counters are plain objects so the hot path pays one property increment.

export interface Counter {
  readonly name: string;
  readonly help: string;
  value: number;
}

export class Metrics {
  private readonly counters = new Map<string, Counter>();
  /** Per-reply counts for /metrics, kept only while the admin endpoint is on (see QueryStats). */
  queries: QueryStats | null = null;

  /** Returns the counter of that name, creating it on first use. */
  counter(name: string, help = ''): Counter {
    let c = this.counters.get(name);
    if (c === undefined) {
      c = { name, help, value: 0 };
      this.counters.set(name, c);
    }
    return c;
  }

  get(name: string): number {
    return this.counters.get(name)?.value ?? 0;
  }

  /** Every counter made so far, in the order first asked for (read at scrape time by admin). */
  all(): IterableIterator<Counter> {
    return this.counters.values();
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, c] of this.counters) out[k] = c.value;
    return out;
  }
}

/** Transports as QueryStats indexes them. */
export const TRANSPORT_UDP = 0;
export const TRANSPORT_TCP = 1;
export const TRANSPORT_NAMES = ['udp', 'tcp'] as const;

/** Query types counted by name; every other one is "other", so the label set stays bounded. */
const TYPE_NUMBERS: readonly [string, number][] = [
  ['A', 1], ['NS', 2], ['CNAME', 5], ['SOA', 6], ['PTR', 12], ['MX', 15], ['TXT', 16], ['AAAA', 28], ['SRV', 33],
  ['NAPTR', 35], ['DS', 43], ['DNSKEY', 48], ['SVCB', 64], ['HTTPS', 65], ['AXFR', 252], ['ANY', 255], ['CAA', 257],
];
export const QTYPE_NAMES: readonly string[] = ['other', ...TYPE_NUMBERS.map(([n]) => n)];
/** QTYPE (below 256) -> index in QTYPE_NAMES; 0 is "other". */
const TYPE_INDEX = new Uint8Array(256);
TYPE_NUMBERS.forEach(([, t], i) => {
  if (t < 256) TYPE_INDEX[t] = i + 1;
});
const CAA_INDEX = QTYPE_NAMES.indexOf('CAA');

/** RCODEs 0..11 by name, BADVERS (16, extended), the rest "other". */
export const RCODE_NAMES: readonly string[] = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE', 'DSOTYPENI', 'BADVERS', 'other'];

/**
 * Upper bounds (seconds) of the reply duration histogram: CoreDNS's dns_request_duration_seconds
 * (ExponentialBuckets(0.00025, 2, 16)), so dashboards made for it read linedns the same way.
 */
export const DURATION_BUCKETS: readonly number[] = Array.from({ length: 16 }, (_, i) => 0.00025 * 2 ** i);
const BUCKET_MS = new Float64Array(DURATION_BUCKETS.map((s) => s * 1000));
const NBUCKETS = DURATION_BUCKETS.length + 1;

const NT = QTYPE_NAMES.length;
const NR = RCODE_NAMES.length;
/** One block of reply counts per answering stage: transport x qtype x rcode. */
const BLOCK = TRANSPORT_NAMES.length * NT * NR;

/**
 * The replies that left, counted by the transports when the admin endpoint is on (null
 * otherwise, so a server without it pays one null check per reply): by transport, query type,
 * RCODE and answering stage, their durations, and the client's lines. Each reply costs a few
 * typed-array increments and one Map lookup of the stage's name; the prom-client values are
 * built from these at scrape time.
 */
export class QueryStats {
  /** Stage name -> index in `blocks` and `stageNames`. */
  private readonly stageIndex = new Map<string, number>();
  readonly stageNames: string[] = [];
  private readonly blocks: Float64Array[] = [];
  /** Per transport: NBUCKETS counts (not cumulative; the last is +Inf). */
  readonly durationCounts = new Float64Array(TRANSPORT_NAMES.length * NBUCKETS);
  readonly durationSums = new Float64Array(TRANSPORT_NAMES.length);
  /** Replies per LineSet id (core/views.ts interns the sets process-wide). */
  lineSets = new Float64Array(64);

  /**
   * One reply: `transport` TRANSPORT_UDP or TRANSPORT_TCP, `rcode` with its extended bits,
   * `answeredBy` the stage ('' when none), `ms` from arrival to send, `lineSet` the id of the
   * client's LineSet (0: no lines).
   */
  count(transport: number, qtype: number, rcode: number, answeredBy: string, ms: number, lineSet: number): void {
    let s = this.stageIndex.get(answeredBy);
    if (s === undefined) s = this.addStage(answeredBy);
    const t = qtype < 256 ? TYPE_INDEX[qtype]! : qtype === 257 ? CAA_INDEX : 0;
    const r = rcode <= 11 ? rcode : rcode === 16 ? 12 : 13;
    this.blocks[s]![(transport * NT + t) * NR + r]!++;
    let b = 0;
    while (b < BUCKET_MS.length && ms > BUCKET_MS[b]!) b++;
    this.durationCounts[transport * NBUCKETS + b]!++;
    this.durationSums[transport]! += ms / 1000;
    if (lineSet !== 0) {
      if (lineSet >= this.lineSets.length) this.growLines(lineSet);
      this.lineSets[lineSet]!++;
    }
  }

  private addStage(name: string): number {
    const i = this.stageNames.length;
    this.stageIndex.set(name, i);
    this.stageNames.push(name);
    this.blocks.push(new Float64Array(BLOCK));
    return i;
  }

  private growLines(id: number): void {
    const next = new Float64Array(Math.max(id + 1, this.lineSets.length * 2));
    next.set(this.lineSets);
    this.lineSets = next;
  }

  /** Every non-zero reply count with its labels (read at scrape time). */
  replies(): { labels: { transport: string; type: string; rcode: string; stage: string }; value: number }[] {
    const out: { labels: { transport: string; type: string; rcode: string; stage: string }; value: number }[] = [];
    this.blocks.forEach((block, s) => {
      for (let i = 0; i < BLOCK; i++) {
        if (block[i] === 0) continue;
        const r = i % NR;
        const t = Math.floor(i / NR) % NT;
        const tr = Math.floor(i / (NR * NT));
        out.push({ labels: { transport: TRANSPORT_NAMES[tr]!, type: QTYPE_NAMES[t]!, rcode: RCODE_NAMES[r]!, stage: this.stageNames[s] || 'none' }, value: block[i]! });
      }
    });
    return out;
  }

  /** The duration histogram of one transport: counts per bucket (not cumulative, +Inf last) and the sum. */
  durations(transport: number): { counts: number[]; sum: number } {
    return { counts: Array.from(this.durationCounts.subarray(transport * NBUCKETS, (transport + 1) * NBUCKETS)), sum: this.durationSums[transport]! };
  }
}
