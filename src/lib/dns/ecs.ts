// EDNS Client Subnet (RFC 7871) on the wire: the option we send upstream, the one we read back,
// the one we add to replies, and the cache's per-scope keys. Nothing here runs for a query without ECS.

import { parseIp } from '../net/address.js';
import { EdnsOption } from './constants.js';
import { growOpt, optRdLengthAt } from './edns-options.js';
import type { MessageScan } from './message.js';
import type { ClientSubnet } from './query.js';

/** `forward.clientSubnet` when on: the source prefix sent upstream per family (RFC 7871 11.1: 24 and 56). */
export interface SubnetPrefixes {
  readonly ipv4: number;
  readonly ipv6: number;
}

/** Octets of an ECS option (code, length and data) carrying `sourcePrefix` bits. */
export function ecsOptionSize(sourcePrefix: number): number {
  return 8 + ((sourcePrefix + 7) >> 3);
}

/**
 * The subnet a client's answers depend on: its own ECS option when that speaks for it (`trusted`:
 * the classifier believed it), an opt-out (source prefix 0, RFC 7871 7.1.2) from anyone, else its
 * socket address at full length. Null for an address that does not parse (none the sockets give).
 */
export function clientSubnet(address: string, ecs: ClientSubnet | null, trusted: boolean): ClientSubnet | null {
  if (ecs !== null && (trusted || ecs.sourcePrefix === 0)) return ecs;
  const bytes = parseIp(address);
  if (bytes === null) return null;
  return { family: bytes.length === 4 ? 1 : 2, sourcePrefix: bytes.length * 8, scopePrefix: 0, address: bytes };
}

/** `subnet` cut to the configured prefix of its family (never longer than it already is), bits beyond it zeroed. */
export function truncateSubnet(subnet: ClientSubnet, prefixes: SubnetPrefixes): ClientSubnet {
  const max = subnet.family === 1 ? prefixes.ipv4 : prefixes.ipv6;
  const prefix = Math.min(max, subnet.sourcePrefix);
  return { family: subnet.family, sourcePrefix: prefix, scopePrefix: 0, address: maskBytes(subnet.address, prefix) };
}

function maskBytes(address: Uint8Array, prefix: number): Uint8Array {
  const out = new Uint8Array(address.length);
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) out[i] = address[i]!;
  if (prefix & 7) out[whole] = address[whole]! & (0xff << (8 - (prefix & 7)));
  return out;
}

/** Writes an ECS option (code, length, family, prefixes, the address's first octets) at `at`; returns its end. */
export function writeEcsOption(out: Uint8Array, at: number, family: number, sourcePrefix: number, scopePrefix: number, address: Uint8Array): number {
  const addrLen = (sourcePrefix + 7) >> 3;
  out[at] = 0;
  out[at + 1] = EdnsOption.ECS;
  out[at + 2] = 0;
  out[at + 3] = 4 + addrLen;
  out[at + 4] = 0;
  out[at + 5] = family;
  out[at + 6] = sourcePrefix;
  out[at + 7] = scopePrefix;
  for (let i = 0; i < addrLen; i++) out[at + 8 + i] = address[i]!;
  // RFC 7871 6: no bits set beyond the source prefix.
  if (sourcePrefix & 7) out[at + 8 + addrLen - 1]! &= 0xff << (8 - (sourcePrefix & 7));
  return at + 8 + addrLen;
}

/**
 * The ECS option of a reply's OPT record: null when there is none, 'bad' when it is malformed
 * or does not echo the family, source prefix and address `sent` (RFC 7871 7.3: such a reply is
 * not to be used). Its scope is what the answer depends on.
 */
export function readReplyEcs(reply: Uint8Array, scan: MessageScan, sent: ClientSubnet): number | null | 'bad' {
  if (scan.opt < 0) return null;
  const r = scan.records[scan.opt]!;
  const end = r.rdStart + r.rdLength;
  let found: number | null = null;
  for (let o = r.rdStart; o + 4 <= end; ) {
    const code = (reply[o]! << 8) | reply[o + 1]!;
    const len = (reply[o + 2]! << 8) | reply[o + 3]!;
    const data = o + 4;
    if (data + len > end) return 'bad';
    if (code === EdnsOption.ECS) {
      if (found !== null || len < 4) return 'bad';
      const family = (reply[data]! << 8) | reply[data + 1]!;
      const source = reply[data + 2]!;
      const scope = reply[data + 3]!;
      if (family !== sent.family || source !== sent.sourcePrefix || len - 4 !== (source + 7) >> 3) return 'bad';
      if (scope > (family === 1 ? 32 : 128)) return 'bad';
      if (!prefixEqual(reply, data + 4, sent.address, source)) return 'bad';
      found = scope;
    }
    o = data + len;
  }
  return found;
}

/** Whether the first `bits` bits of `a` (from `at`) and `b` agree. */
function prefixEqual(a: Uint8Array, at: number, b: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[at + i] !== b[i]) return false;
  if (bits & 7) {
    const mask = 0xff << (8 - (bits & 7)) & 0xff;
    if ((a[at + whole]! & mask) !== (b[whole]! & mask)) return false;
  }
  return true;
}

/**
 * The cache's key of an answer valid for the clients whose subnet shares its first `prefix`
 * bits with `address` (RFC 7871 7.3.1): a latin1 string of family, prefix and those octets.
 */
export function subnetKey(family: number, address: Uint8Array, prefix: number): string {
  let key = String.fromCharCode(family, prefix);
  const masked = maskBytes(address, prefix);
  for (let i = 0; i < (prefix + 7) >> 3; i++) key += String.fromCharCode(masked[i]!);
  return key;
}

/** The prefix length a subnetKey stands for. */
export function subnetKeyPrefix(key: string): number {
  return key.charCodeAt(1);
}

/**
 * Whether a client with `subnet` is one an answer keyed `key` was given for: same family, and
 * at least the key's prefix known and equal. A client that revealed fewer bits is not (RFC
 * 7871 7.3.1: an answer for a longer prefix cannot serve a shorter one).
 */
export function subnetMatches(key: string, subnet: ClientSubnet): boolean {
  if (key.charCodeAt(0) !== subnet.family) return false;
  const prefix = key.charCodeAt(1);
  if (subnet.sourcePrefix < prefix) return false;
  const whole = prefix >> 3;
  const a = subnet.address;
  for (let i = 0; i < whole; i++) if (key.charCodeAt(2 + i) !== a[i]) return false;
  if (prefix & 7) {
    const mask = 0xff << (8 - (prefix & 7)) & 0xff;
    if (key.charCodeAt(2 + whole) !== (a[whole]! & mask)) return false;
  }
  return true;
}

/**
 * The reply with an ECS option added to its OPT record: the client's family, source prefix and
 * address, and `scope` (RFC 7871 7.2.1); as it is when it has no OPT last (edns-options.ts).
 */
export function withEcsOption(reply: Buffer, ecs: ClientSubnet, scope: number): Buffer {
  const size = ecsOptionSize(ecs.sourcePrefix);
  const at = optRdLengthAt(reply, size);
  if (at < 0) return reply;
  const out = growOpt(reply, at, size);
  writeEcsOption(out, reply.length, ecs.family, ecs.sourcePrefix, scope, ecs.address);
  return out;
}
