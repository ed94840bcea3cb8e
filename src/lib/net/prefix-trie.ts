// Binary prefix tries for IPv4 and IPv6: lookup cost depends on address length, not on how
// many CIDRs are loaded. Used for smart-line classification, ACLs and ECS trust.

import { parseIp, type Cidr } from './address.js';

interface Node<T> {
  zero: Node<T> | null;
  one: Node<T> | null;
  value: T | undefined;
}

function newNode<T>(): Node<T> {
  return { zero: null, one: null, value: undefined };
}

/** Memo value for "no prefix holds this address" (undefined would need a second probe). */
const ABSENT: unique symbol = Symbol('absent');

export class PrefixTrie<T> {
  private readonly v4: Node<T> = newNode();
  private readonly v6: Node<T> = newNode();
  size = 0;
  /** Answers of lookupAddress per address string, bounded so spoofed sources cannot grow it. */
  private readonly recent = new Map<string, T | typeof ABSENT>();
  /** The last address looked up: a sidecar's traffic is mostly one client, so this often
   *  answers with one string comparison instead of hashing a fresh string into the Map. */
  private lastAddress = '';
  private lastFound: T | undefined = undefined;

  /** Sets the value at a prefix; `merge` combines with a value already there. */
  insert(cidr: Cidr, value: T, merge?: (old: T, added: T) => T): void {
    let node = cidr.bytes.length === 4 ? this.v4 : this.v6;
    for (let bit = 0; bit < cidr.prefix; bit++) {
      const set = (cidr.bytes[bit >> 3]! & (0x80 >> (bit & 7))) !== 0;
      let next = set ? node.one : node.zero;
      if (next === null) {
        next = newNode();
        if (set) node.one = next;
        else node.zero = next;
      }
      node = next;
    }
    this.recent.clear();
    this.lastAddress = '';
    if (node.value === undefined) this.size++;
    node.value = node.value !== undefined && merge ? merge(node.value, value) : value;
  }

  /** The value of the longest prefix holding `addr` (4 or 16 octets), or undefined. */
  longest(addr: Uint8Array): T | undefined {
    let node: Node<T> | null = addr.length === 4 ? this.v4 : this.v6;
    let found = node.value;
    const bits = addr.length * 8;
    for (let bit = 0; bit < bits; bit++) {
      node = (addr[bit >> 3]! & (0x80 >> (bit & 7))) !== 0 ? node.one : node.zero;
      if (node === null) break;
      if (node.value !== undefined) found = node.value;
    }
    return found;
  }

  /**
   * How many leading bits of `addr` decide what longest() returns: every address sharing them
   * gets the same value (RFC 7871's scope of an answer chosen by it). Where the walk leaves the
   * trie, one bit more when the node it stops at has a child the other way.
   */
  decidingBits(addr: Uint8Array): number {
    let node: Node<T> = addr.length === 4 ? this.v4 : this.v6;
    const bits = addr.length * 8;
    for (let bit = 0; bit < bits; bit++) {
      const next = (addr[bit >> 3]! & (0x80 >> (bit & 7))) !== 0 ? node.one : node.zero;
      if (next === null) return node.zero === null && node.one === null ? bit : bit + 1;
      node = next;
    }
    return bits;
  }

  /**
   * longest() for an address as a socket reports it (IPv4-mapped IPv6 counts as IPv4), memoised
   * per string: a busy client's address is parsed once, not on every packet.
   */
  lookupAddress(address: string): T | undefined {
    if (address === this.lastAddress) return this.lastFound;
    const known = this.recent.get(address);
    let found: T | undefined;
    if (known !== undefined) found = known === ABSENT ? undefined : known;
    else {
      const bytes = parseIp(address);
      found = bytes === null ? undefined : this.longest(bytes);
      if (this.recent.size >= 4096) this.recent.clear();
      this.recent.set(address, found === undefined ? ABSENT : found);
    }
    this.lastAddress = address;
    this.lastFound = found;
    return found;
  }

  /**
   * Visits every stored prefix, shortest first, with the values of the stored prefixes that
   * contain it (nearest last), so callers can precompute what a lookup ending there means.
   */
  forEachPrefix(visit: (cidr: Cidr, value: T, ancestors: readonly T[]) => void): void {
    const go = (node: Node<T> | null, bytes: Uint8Array, depth: number, ancestors: T[]): void => {
      if (node === null) return;
      const value = node.value;
      if (value !== undefined) {
        visit({ bytes: bytes.slice(), prefix: depth, text: '' }, value, ancestors);
        ancestors.push(value);
      }
      go(node.zero, bytes, depth + 1, ancestors);
      if (node.one !== null) {
        bytes[depth >> 3]! |= 0x80 >> (depth & 7);
        go(node.one, bytes, depth + 1, ancestors);
        bytes[depth >> 3]! &= ~(0x80 >> (depth & 7));
      }
      if (value !== undefined) ancestors.pop();
    };
    go(this.v4, new Uint8Array(4), 0, []);
    go(this.v6, new Uint8Array(16), 0, []);
  }
}
