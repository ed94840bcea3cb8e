// "Is this client address in that list of CIDRs?" for ACLs and ECS trust, via a prefix trie.
// Recent answers are memoised per address string, bounded against spoofed-source floods.

import { parseCidr, parseIp } from './address.js';
import { PrefixTrie } from '../smartline/trie.js';

export class AddressMatcher {
  private readonly trie = new PrefixTrie<true>();
  private readonly recent = new Map<string, boolean>();

  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const cidr = parseCidr(text);
      if (typeof cidr !== 'string') this.trie.insert(cidr, true);
    }
  }

  get empty(): boolean {
    return this.trie.size === 0;
  }

  matches(address: string): boolean {
    let hit = this.recent.get(address);
    if (hit !== undefined) return hit;
    const bytes = parseIp(address);
    hit = bytes !== null && this.trie.longest(bytes) === true;
    if (this.recent.size >= 4096) this.recent.clear();
    this.recent.set(address, hit);
    return hit;
  }
}
