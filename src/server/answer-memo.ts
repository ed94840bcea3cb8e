// The UDP answer memo: within one second, the same query bytes from the same client address get
// the same answer from the built-in stages, so a repeat is answered without running the pipeline.

import type { Counter } from '../metrics/metrics.js';

/** Queries longer than this are not memoised (real ones are far shorter; junk is not hashed). */
export const MEMO_MAX_QUERY = 512;

interface Memo {
  /** The query that made it, after its ID, one char per octet: compared on every use, as
   *  hashes can collide (a string sits in the heap with the entry; a Buffer's octets do not). */
  query: string;
  /** The reply as sent (truncated if it was), with the ID of the query that made it. */
  reply: Buffer;
  /** The counter the answering stage bumped (cache hits, local answers): bumped again per use. */
  counter: Counter;
}

/** FNV-1a over the query's octets after its ID: a number key, so no string is built per query. */
export function queryHash(msg: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 2; i < msg.length; i++) h = Math.imul(h ^ msg[i]!, 0x01000193);
  return h >>> 0;
}

function sameQuery(kept: string, msg: Uint8Array): boolean {
  if (kept.length !== msg.length - 2) return false;
  for (let i = 0; i < kept.length; i++) if (kept.charCodeAt(i) !== msg[i + 2]) return false;
  return true;
}

/**
 * Keyed by client address, then by the query's octets after its ID: flags, question spelling,
 * EDNS size, DO bit and options are all in the key, so everything the built-in stages look at
 * is. Emptied when the second changes (TTLs age per second), when it holds `maxEntries`, and on
 * every configuration change (Engine). Only answers from the cache and local records are kept.
 */
export class AnswerMemo {
  private second = Number.NaN;
  private size = 0;
  private readonly clients = new Map<string, Map<number, Memo>>();
  private lastAddress = '';
  private lastClient: Map<number, Memo> | undefined = undefined;

  constructor(private readonly maxEntries = 10_000) {}

  private client(address: string): Map<number, Memo> | undefined {
    if (address !== this.lastAddress) {
      this.lastAddress = address;
      this.lastClient = this.clients.get(address);
    }
    return this.lastClient;
  }

  /** `hash`: queryHash(query). */
  get(address: string, query: Buffer, hash: number, second: number): Memo | undefined {
    if (second !== this.second) {
      this.clear();
      this.second = second;
      return undefined;
    }
    const m = this.client(address)?.get(hash);
    return m !== undefined && sameQuery(m.query, query) ? m : undefined;
  }

  set(address: string, query: Buffer, hash: number, second: number, reply: Buffer, counter: Counter): void {
    if (second !== this.second || this.size >= this.maxEntries) {
      this.clear();
      this.second = second;
    }
    let client = this.client(address);
    if (client === undefined) {
      client = new Map();
      this.clients.set(address, client);
      this.lastClient = client;
    }
    if (!client.has(hash)) this.size++;
    client.set(hash, { query: query.toString('latin1', 2), reply, counter });
  }

  clear(): void {
    this.clients.clear();
    this.size = 0;
    this.lastAddress = '';
    this.lastClient = undefined;
  }
}
