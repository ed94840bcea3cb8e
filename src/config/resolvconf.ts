// Reads the nameservers of /etc/resolv.conf, for the "resolv.conf" upstream entry.
// glibc's rule applies: no nameserver line means 127.0.0.1.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/** A nameserver and where it is written (line and column of the address; 0 when implied). */
export interface ResolvConfNameserver {
  address: string;
  line: number;
  column: number;
}

export function resolvConfNameservers(path = '/etc/resolv.conf'): ResolvConfNameserver[] {
  const implied = [{ address: '127.0.0.1', line: 0, column: 0 }];
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return implied;
  }
  const out: ResolvConfNameserver[] = [];
  text.split('\n').forEach((line, i) => {
    const m = /^(\s*nameserver\s+)(\S+)/.exec(line);
    if (!m) return;
    const addr = m[2]!.replace(/%.*$/, '');
    // Lines and columns from 1, as every other config position linedns reports.
    if (isIP(addr)) out.push({ address: addr, line: i + 1, column: m[1]!.length + 1 });
  });
  return out.length > 0 ? out : implied;
}
