// Small builders of wire fields (16- and 32-bit integers, <character-string>), shared by the
// stages that write replies octet by octet (records, zones).

/** A 16-bit field in network order. */
export function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n & 0xffff, 0);
  return b;
}

/** A 32-bit field in network order (a TTL, an SOA counter). */
export function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** A <character-string>: length octet and up to 255 octets (config load refuses longer ones). */
export function characterString(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}
