// The UDP answer memo: within one second, the same query bytes from the same client address get
// the same answer from the built-in stages, so a repeat is answered without running the pipeline.

import type { Counter } from '../lib/metrics.js';
import { fnv1a, fnv1aOctets } from '../lib/fnv.js';

/** Queries longer than this are not memoised (real ones are far shorter; junk is not hashed). */
export const MEMO_MAX_QUERY = 512;

interface Memo {
  /** The second it was made in: an answer from another second is never used (TTLs age). */
  second: number;
  address: string;
  /** The query that made it, after its ID, one char per octet: compared on every use, as
   *  hashes can collide (a string sits in the heap with the entry; a Buffer's octets do not). */
  query: string;
  /** The reply as sent (truncated if it was), with the ID of the query that made it. */
  reply: Buffer;
  /** The counter the answering stage bumped (cache hits, local answers): bumped again per use. */
  counter: Counter;
  /** For observers of a repeat: the stage that answered and the question it asked. */
  answeredBy: string;
  name: string;
  qtype: number;
  /** The id of the client's LineSet when the metrics asked for it (0 otherwise): a repeat counts for the same lines. */
  lineSet: number;
}

/** The hash of a query's octets after its ID: a number key, so no string is built per query. */
export function queryHash(msg: Uint8Array): number {
  return fnv1aOctets(msg, 2);
}

function sameQuery(kept: string, msg: Uint8Array): boolean {
  if (kept.length !== msg.length - 2) return false;
  for (let i = 0; i < kept.length; i++) if (kept.charCodeAt(i) !== msg[i + 2]) return false;
  return true;
}

/** Slots in the table; a power of two. */
const SLOTS = 1 << 14;

/**
 * A direct-mapped table indexed by the query's hash: one array load per lookup, no Map probe,
 * and a bounded size with nothing to evict (a newer answer takes the slot). An entry serves only
 * the same client address, the same octets after the ID (flags, question as spelled, EDNS size,
 * DO, options: everything the built-in stages look at) and the same second. Engine replaces the
 * whole memo on every configuration change. Only answers from the cache and local records go in.
 */
export class AnswerMemo {
  private readonly slots: (Memo | undefined)[] = new Array<Memo | undefined>(SLOTS).fill(undefined);
  /** The client address's share of the slot index, kept for the last address seen: most
   *  traffic comes from few clients, and two clients asking the same name must not evict
   *  each other's answer. */
  private lastAddress = '';
  private lastAddressHash = 0;

  private slot(address: string, hash: number): number {
    if (address !== this.lastAddress) {
      this.lastAddress = address;
      this.lastAddressHash = fnv1a(address);
    }
    return (hash ^ this.lastAddressHash) & (SLOTS - 1);
  }

  /** `hash`: queryHash(query). */
  get(address: string, query: Uint8Array, hash: number, second: number): Memo | undefined {
    const m = this.slots[this.slot(address, hash)];
    if (m === undefined || m.second !== second || m.address !== address || !sameQuery(m.query, query)) return undefined;
    return m;
  }

  set(address: string, query: Buffer, hash: number, second: number, reply: Buffer, counter: Counter, answeredBy = '', name = '', qtype = 0, lineSet = 0): void {
    this.slots[this.slot(address, hash)] = { second, address, query: query.toString('latin1', 2), reply, counter, answeredBy, name, qtype, lineSet };
  }
}
