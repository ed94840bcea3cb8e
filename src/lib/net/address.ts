// IP addresses and CIDRs as octet arrays: what the prefix tries and ACLs match on.
// IPv4 clients are parsed by hand (hot path); IPv6 and CIDR syntax go through ip-cidr/ip-address.

import { isIPv4, isIPv6 } from 'node:net';
import IPCIDR from 'ip-cidr';
import { Address6 } from 'ip-address';

export interface Cidr {
  /** 4 or 16 octets, host bits cleared. */
  bytes: Uint8Array;
  prefix: number;
  text: string;
}

function parseIPv4(s: string): Uint8Array | null {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || part === 3) return null;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      value = value * 10 + (c - 0x30);
      if (++digits > 3 || value > 255) return null;
    } else {
      return null;
    }
  }
  if (digits === 0 || part !== 3) return null;
  out[3] = value;
  return out;
}

/**
 * Octets of an IP address; an IPv4-mapped IPv6 address (::ffff:a.b.c.d, as dual-stack sockets
 * report IPv4 clients) is returned as its IPv4 address. Null when not an address.
 */
export function parseIp(s: string): Uint8Array | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return v4;
  const zone = s.indexOf('%');
  const text = zone >= 0 ? s.slice(0, zone) : s;
  if (!isIPv6(text)) return null;
  const bytes = Uint8Array.from(new Address6(text).toUnsignedByteArray());
  const full = new Uint8Array(16);
  full.set(bytes, 16 - bytes.length);
  let mapped = full[10] === 0xff && full[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (full[i] !== 0) mapped = false;
  return mapped ? full.slice(12) : full;
}

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a host route). Returns a reason on error. */
export function parseCidr(text: string): Cidr | string {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  if (!isIPv4(addr) && !isIPv6(addr)) return `"${addr}" is not an IP address`;
  const max = isIPv4(addr) ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return `prefix "/${p}" is not 0..${max}`;
    prefix = Number(p);
  }
  if (!IPCIDR.isValidCIDR(`${addr}/${prefix}`)) return `"${text}" is not a CIDR`;
  const raw = max === 32 ? parseIPv4(addr)! : fullV6(addr);
  const bytes = new Uint8Array(raw.length);
  for (let bit = 0; bit < prefix; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    bytes[i]! |= raw[i]! & m;
  }
  return { bytes, prefix, text: s };
}

function fullV6(addr: string): Uint8Array {
  const bytes = new Address6(addr).toUnsignedByteArray();
  const full = new Uint8Array(16);
  full.set(bytes, 16 - bytes.length);
  return full;
}

/** Each CIDR of `list` that does not parse, with its index and the sentence a config error gives. */
export function badCidrs(list: readonly string[]): { index: number; message: string }[] {
  const out: { index: number; message: string }[] = [];
  list.forEach((c, index) => {
    const parsed = parseCidr(c);
    if (typeof parsed === 'string') out.push({ index, message: `${JSON.stringify(c)}: ${parsed}; expected a CIDR such as "10.0.0.0/8" or "2001:db8::/32"` });
  });
  return out;
}
