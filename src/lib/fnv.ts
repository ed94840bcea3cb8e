// FNV-1a, the 32-bit hash of the hot-path tables: the records name filter and the answer memo.
// Not keyed: use it only where a collision costs a lookup, never a wrong answer.

const OFFSET = 0x811c9dc5;
const PRIME = 0x01000193;

/** Over the UTF-16 code units of a string (names and addresses here are ASCII). */
export function fnv1a(text: string): number {
  let h = OFFSET;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), PRIME);
  return h >>> 0;
}

/** Over the octets of `buf` from `start` to its end. */
export function fnv1aOctets(buf: Uint8Array, start: number): number {
  let h = OFFSET;
  for (let i = start; i < buf.length; i++) h = Math.imul(h ^ buf[i]!, PRIME);
  return h >>> 0;
}
