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
 * The 16 octets of an IPv6 address in text (RFC 4291 2.2: hex groups, one "::", an optional
 * dotted IPv4 tail), without a zone; null when not one. By hand for zone loading, where
 * ip-address's parse cost a quarter of the time of a 100,000-record zone.
 */
export function parseIPv6(s: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const n = s.length;
  if (n < 2 || n > 45) return null;
  let pos = 0; // octets written
  let gap = -1; // octet offset of "::"
  let i = 0;
  if (s.charCodeAt(0) === 0x3a) {
    if (s.charCodeAt(1) !== 0x3a) return null;
    gap = 0;
    i = 2;
    if (i === n) return out;
  }
  for (;;) {
    // One group (or the IPv4 tail) starts at i.
    let value = 0;
    let digits = 0;
    const start = i;
    while (i < n && digits <= 4) {
      const c = s.charCodeAt(i);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else break;
      value = value * 16 + d;
      digits++;
      i++;
    }
    if (i < n && s.charCodeAt(i) === 0x2e) {
      if (pos > 12) return null;
      const tail = s.slice(start);
      // inet_pton's rule: no leading zeros in the dotted tail, which could read as octal.
      if (/(?:^|\.)0\d/.test(tail)) return null;
      const v4 = parseIPv4(tail);
      if (v4 === null) return null;
      out.set(v4, pos);
      pos += 4;
      break;
    }
    if (digits === 0 || digits > 4 || pos > 14) return null;
    out[pos++] = value >> 8;
    out[pos++] = value & 0xff;
    if (i === n) break;
    if (s.charCodeAt(i) !== 0x3a) return null;
    i++;
    if (s.charCodeAt(i) === 0x3a) {
      if (gap >= 0) return null;
      gap = pos;
      i++;
      if (i === n) break;
    } else if (i === n) {
      return null;
    }
  }
  if (gap < 0) return pos === 16 ? out : null;
  // "::" stands for at least one zero group.
  if (pos > 14) return null;
  const tail = pos - gap;
  out.copyWithin(16 - tail, gap, pos);
  out.fill(0, gap, 16 - tail);
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

/** The in-addr.arpa / ip6.arpa name of an address (for PTR records), or null for a non-address. */
export function reverseName(address: string): string | null {
  const bytes = parseIp(address);
  if (bytes === null) return null;
  if (bytes.length === 4) return `${bytes[3]}.${bytes[2]}.${bytes[1]}.${bytes[0]}.in-addr.arpa`;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) nibbles.push((bytes[i]! & 0xf).toString(16), (bytes[i]! >> 4).toString(16));
  return `${nibbles.join('.')}.ip6.arpa`;
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

/** Whether `bytes` (4 or 16 octets) lies in `cidr`: a linear check, for explanations, not lookups. */
export function cidrContains(cidr: Cidr, bytes: Uint8Array): boolean {
  if (bytes.length !== cidr.bytes.length) return false;
  for (let bit = 0; bit < cidr.prefix; bit += 8) {
    const keep = Math.min(8, cidr.prefix - bit);
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((bytes[bit / 8]! & mask) !== (cidr.bytes[bit / 8]! & mask)) return false;
  }
  return true;
}

/** 4 or 16 octets as text (IPv6 in full groups, unabbreviated: for messages only). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i + 1 < bytes.length; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return groups.join(':');
}

/** HOST:PORT as logs and messages write it, an IPv6 address in brackets ([::1]:53). */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
