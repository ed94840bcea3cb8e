// One upstream of one route as the forward stage keeps it: health (down marks), counters and a
// latency histogram for /metrics, and its measured RTT: the "fastest" policy and each attempt's timeout follow it.

import type { UdpUpstream } from './udp.js';
import type { UpstreamConfig, UpstreamPolicy } from '../../config/types.js';

/** Upper bounds (seconds) of upstream_answer_duration_seconds; +Inf implied. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BUCKET_MS: readonly number[] = LATENCY_BUCKETS.map((s) => s * 1000);

/** Weight of the newest sample in the smoothed RTT (CoreDNS and dnsdist smooth likewise). */
const RTT_WEIGHT = 0.3;
/** Weight of the newest deviation in the RTT variance (RFC 6298's beta). */
const RTTVAR_WEIGHT = 0.25;
/**
 * The retransmission timeout (ms) of an upstream never measured: Unbound's, 0 + 4 x 94 ms
 * (UNKNOWN_SERVER_NICENESS), long enough for a far resolver, short enough to fail over fast.
 */
export const INITIAL_RTO_MS = 376;

/**
 * A query waiting for an upstream's answer, linked into that upstream's list through its own
 * fields (no node allocated per attempt), so that marking the upstream down can move each on.
 */
export interface Waiting {
  prevWaiting: Waiting | null;
  nextWaiting: Waiting | null;
  /** The upstream was marked down while this query waited for it: try the next one now. */
  abandon(): void;
}

export interface UpstreamState {
  readonly config: UpstreamConfig;
  /** HOST:PORT as logs show it, made once rather than per answer. */
  readonly address: string;
  /** Its UDP socket pool (connected to it: ICMP errors fail an attempt at once); shared by routes. */
  lane: UdpUpstream;
  consecutiveFailures: number;
  /** Marked down: no client query while another upstream of the route is up; probed instead. */
  down: boolean;
  /** Why it was marked down, for logs, /readyz and explain. */
  downWhy: string;
  /** Queries waiting for its answer now (a doubly linked list through the queries). */
  waiting: Waiting | null;
  /** A health probe to it is in flight. */
  probing: boolean;
  /** A loop probe sent to it came back to us as a client query: queries to it fail at once. */
  looped: boolean;
  /** Smoothed RTT in ms of its usable answers (and failed attempts); 0 while untried. */
  srtt: number;
  /** Mean deviation of the RTT samples in ms (RFC 6298 RTTVAR); 0 until the first sample. */
  rttvar: number;
  /**
   * Retransmission timeout in ms (RFC 6298 RTO): srtt + 4 x rttvar after each RTT sample,
   * INITIAL_RTO_MS before the first, doubled by timeouts (backOff); bounded by forward's options where used.
   */
  rto: number;
  /** For /metrics: attempts sent, usable answers and their summed latency, failed attempts. */
  sent: number;
  answered: number;
  answerMs: number;
  failures: number;
  /** Answers per LATENCY_BUCKETS bucket (not cumulative), the last one +Inf. */
  readonly buckets: number[];
}

export function newUpstreamState(config: UpstreamConfig, address: string, lane: UdpUpstream): UpstreamState {
  return {
    config,
    address,
    lane,
    consecutiveFailures: 0,
    down: false,
    downWhy: '',
    waiting: null,
    probing: false,
    looped: false,
    srtt: 0,
    rttvar: 0,
    rto: INITIAL_RTO_MS,
    sent: 0,
    answered: 0,
    answerMs: 0,
    failures: 0,
    buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0),
  };
}

/**
 * A usable answer after `ms`: counted and bucketed; no allocation. `sample` says whether `ms` is
 * an RTT sample (the answer to the first attempt of the query to `u`; Karn's rule: not one to a
 * retry, whose time includes a TCP handshake or follows another reply), which then updates srtt,
 * rttvar and the RTO as RFC 6298 section 2 does.
 */
export function recordAnswer(u: UpstreamState, ms: number, sample: boolean): void {
  u.answered++;
  u.answerMs += ms;
  let b = 0;
  while (b < BUCKET_MS.length && ms > BUCKET_MS[b]!) b++;
  u.buckets[b]!++;
  if (!sample) return;
  if (u.rttvar === 0) {
    // The first sample (or a variance decayed to nothing, where restarting is harmless).
    u.srtt = Math.max(ms, 0.001);
    u.rttvar = u.srtt / 2;
  } else {
    u.rttvar += RTTVAR_WEIGHT * (Math.abs(u.srtt - ms) - u.rttvar);
    smooth(u, ms);
  }
  u.rto = u.srtt + 4 * u.rttvar;
}

/**
 * An attempt sent while `u`'s RTO was `sentRto` (raised to `min` already) timed out: the RTO
 * doubles (RFC 6298 5.5), up to `cap`. As Unbound's rtt_lost does, it is the RTO the attempt was
 * sent with that doubles, not the current one, so a burst of queries timing out together doubles
 * it once rather than once each; and an answer that brought it down meanwhile wins.
 */
export function backOff(u: UpstreamState, sentRto: number, min: number, cap: number): void {
  if (Math.max(u.rto, min) < sentRto) return;
  const doubled = Math.min(sentRto * 2, cap);
  if (u.rto < doubled) u.rto = doubled;
}

/** The timeout of an attempt to `u` now: its RTO, no shorter than `min`, no longer than `max`. */
export function attemptTimeout(u: UpstreamState, min: number, max: number): number {
  return Math.min(max, Math.max(min, u.rto));
}

/** Feeds one sample into the smoothed RTT (a failed attempt feeds the time it cost). */
export function smooth(u: UpstreamState, ms: number): void {
  u.srtt = u.srtt === 0 ? Math.max(ms, 0.001) : u.srtt + RTT_WEIGHT * (ms - u.srtt);
}

/** Usable for client queries now: neither marked down nor looping back to us. */
export function isUp(u: UpstreamState): boolean {
  return !u.down && !u.looped;
}

/**
 * The index of the upstream a query asks first. Allocation-free. `turn` is the route's
 * round-robin counter; `rand` a random integer below 65536.
 */
export function firstIndex(policy: UpstreamPolicy, list: readonly UpstreamState[], turn: number, rand: number): number {
  const n = list.length;
  switch (policy) {
    case 'sequential':
      return 0;
    case 'random':
      return rand % n;
    case 'round_robin':
      return turn % n;
    case 'fastest': {
      // Untried ones (srtt 0) come first, so each gets measured; down ones are skipped later.
      let best = -1;
      for (let i = 0; i < n; i++) {
        const u = list[i]!;
        if (!isUp(u)) continue;
        if (best < 0 || u.srtt < list[best]!.srtt) best = i;
      }
      return best < 0 ? 0 : best;
    }
  }
}

/**
 * The k-th upstream (0-based) of a query's order, given its first: the rotating policies go
 * on round the list from there; sequential and fastest fall back to the written order.
 */
export function orderAt(policy: UpstreamPolicy, n: number, first: number, k: number): number {
  if (k === 0) return first;
  if (policy === 'fastest') return k - 1 < first ? k - 1 : k;
  return (first + k) % n;
}

export function linkWaiting(u: UpstreamState, w: Waiting): void {
  w.prevWaiting = null;
  w.nextWaiting = u.waiting;
  if (u.waiting !== null) u.waiting.prevWaiting = w;
  u.waiting = w;
}

export function unlinkWaiting(u: UpstreamState, w: Waiting): void {
  if (w.prevWaiting !== null) w.prevWaiting.nextWaiting = w.nextWaiting;
  else if (u.waiting === w) u.waiting = w.nextWaiting;
  if (w.nextWaiting !== null) w.nextWaiting.prevWaiting = w.prevWaiting;
  w.prevWaiting = null;
  w.nextWaiting = null;
}

/** Empties `u`'s list and hands each query that was waiting on to its next upstream. */
export function abandonWaiting(u: UpstreamState): void {
  let w = u.waiting;
  u.waiting = null;
  while (w !== null) {
    const next = w.nextWaiting;
    w.prevWaiting = null;
    w.nextWaiting = null;
    w.abandon();
    w = next;
  }
}
