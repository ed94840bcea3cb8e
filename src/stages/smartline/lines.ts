// Smart-line classification: which lines (labels of smart-line.json) a client address is in.
// Every line whose CIDRs hold the address counts, ordered most specific prefix first.

import { cidrContains, parseCidr, type Cidr } from '../../lib/net/address.js';
import { PrefixTrie } from '../../lib/net/prefix-trie.js';
import { NO_LINES, internLines, type LineSet } from '../../core/views.js';

export type SmartLineConfig = Record<string, readonly string[]>;

export class LineTable {
  private readonly trie = new PrefixTrie<LineSet>();
  readonly lineNames: readonly string[];
  /** The parsed CIDRs of each line, for `matches`. */
  private readonly cidrs = new Map<string, Cidr[]>();

  constructor(config: SmartLineConfig) {
    this.lineNames = Object.keys(config);
    const own = new PrefixTrie<string[]>();
    for (const line of this.lineNames) {
      for (const text of config[line]!) {
        const cidr = parseCidr(text);
        if (typeof cidr === 'string') continue; // config validation reports it
        this.cidrs.set(line, [...(this.cidrs.get(line) ?? []), cidr]);
        own.insert(cidr, [line], (a, b) => (a.includes(b[0]!) ? a : [...a, ...b]));
      }
    }
    // A lookup ends at the longest stored prefix; precompute there its own lines followed by
    // those of the prefixes containing it, nearest first, interned (equal lists, one id).
    own.forEachPrefix((cidr, lines, ancestors) => {
      const all = [...lines];
      for (let i = ancestors.length - 1; i >= 0; i--) for (const l of ancestors[i]!) if (!all.includes(l)) all.push(l);
      this.trie.insert(cidr, internLines(all));
    });
  }

  /** Lines of an address string as a socket reports it; NO_LINES when in none. */
  classify(address: string): LineSet {
    return this.trie.lookupAddress(address) ?? NO_LINES;
  }

  classifyBytes(bytes: Uint8Array): LineSet {
    return this.trie.longest(bytes) ?? NO_LINES;
  }

  /** Bits of `bytes` its lines depend on: the scope of an answer chosen by them (RFC 7871). */
  decidingBits(bytes: Uint8Array): number {
    return this.trie.decidingBits(bytes);
  }

  /** For `explain`: every line and CIDR holding the address, most specific first. */
  matches(bytes: Uint8Array): { line: string; cidr: string }[] {
    const out: { line: string; cidr: string; bits: number }[] = [];
    for (const [line, list] of this.cidrs) {
      for (const c of list) if (cidrContains(c, bytes)) out.push({ line, cidr: c.text, bits: c.prefix });
    }
    return out.sort((a, b) => b.bits - a.bits).map(({ line, cidr }) => ({ line, cidr }));
  }
}
