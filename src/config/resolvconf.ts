// Reads the nameservers of /etc/resolv.conf, for the "resolv.conf" upstream entry.
// glibc's rule applies: no nameserver line means 127.0.0.1.

import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export function resolvConfNameservers(path = '/etc/resolv.conf'): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return ['127.0.0.1'];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = m[1]!.replace(/%.*$/, '');
    if (isIP(addr)) out.push(addr);
  }
  return out.length > 0 ? out : ['127.0.0.1'];
}
