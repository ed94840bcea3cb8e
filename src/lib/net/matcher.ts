// "Is this client address in that list of CIDRs?" for ACLs and ECS trust, via a prefix trie.
// Lookups are memoised per address string by the trie, bounded against spoofed-source floods.

import { parseCidr } from './address.js';
import { PrefixTrie } from './prefix-trie.js';

export class AddressMatcher {
  private readonly trie = new PrefixTrie<true>();

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
    return this.trie.lookupAddress(address) === true;
  }
}
