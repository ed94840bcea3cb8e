// Domain names on the wire: strict reading, validation and presentation form.
// Written by hand because dns-packet accepts corrupt names (PITFALLS.md) and this runs per packet.

import { MAX_LABEL, MAX_NAME_WIRE } from './constants.js';

/** Scratch space for building presentation names without per-label strings. */
const scratch = Buffer.allocUnsafe(MAX_NAME_WIRE * 4 + 8);

function needsEscape(b: number): boolean {
  return b < 0x21 || b > 0x7e || b === 0x2e || b === 0x5c;
}

/**
 * Appends one label to `scratch` in lower-cased presentation form (RFC 1035 5.1 escapes for
 * '.', '\\' and non-printable bytes), so a label holding a dot never collides with two labels.
 */
function appendLabel(buf: Uint8Array, start: number, len: number, pos: number): number {
  for (let i = start; i < start + len; i++) {
    let b = buf[i]!;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (needsEscape(b)) {
      scratch[pos++] = 0x5c;
      if (b === 0x2e || b === 0x5c) {
        scratch[pos++] = b;
      } else {
        scratch[pos++] = 0x30 + Math.floor(b / 100);
        scratch[pos++] = 0x30 + (Math.floor(b / 10) % 10);
        scratch[pos++] = 0x30 + (b % 10);
      }
    } else {
      scratch[pos++] = b;
    }
  }
  return pos;
}

export interface NameRead {
  /** Lower-cased presentation form without the trailing dot; "." for the root. */
  name: string;
  /** Offset just past the name where it stands (past the pointer, if compressed). */
  end: number;
}

/**
 * Reads a name that may use compression. Pointers must point strictly backwards, which bars
 * loops and forward references; labels over 63 and names over 255 octets are refused.
 * Returns null for any malformed name.
 */
export function readName(buf: Uint8Array, offset: number, allowPointers = true): NameRead | null {
  let pos = 0;
  let wireLen = 0;
  let off = offset;
  let end = -1;
  let limit = offset; // a pointer must land before the start of the name it belongs to
  for (;;) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    if (len === 0) {
      wireLen += 1;
      if (wireLen > MAX_NAME_WIRE) return null;
      if (end < 0) end = off + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (!allowPointers || off + 1 >= buf.length) return null;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= limit) return null;
      if (end < 0) end = off + 2;
      limit = target;
      off = target;
      continue;
    }
    if (kind !== 0 || len > MAX_LABEL) return null;
    if (off + 1 + len > buf.length) return null;
    wireLen += len + 1;
    if (wireLen > MAX_NAME_WIRE) return null;
    if (pos > 0) scratch[pos++] = 0x2e;
    pos = appendLabel(buf, off + 1, len, pos);
    off += len + 1;
  }
  return { name: pos === 0 ? '.' : scratch.toString('latin1', 0, pos), end };
}

/**
 * Skips a (possibly compressed) name, validating it as readName does, without building a string.
 * Returns the offset past the name, or -1 when malformed.
 */
export function skipName(buf: Uint8Array, offset: number): number {
  let wireLen = 0;
  let off = offset;
  let end = -1;
  let limit = offset;
  for (;;) {
    if (off >= buf.length) return -1;
    const len = buf[off]!;
    if (len === 0) {
      if (wireLen + 1 > MAX_NAME_WIRE) return -1;
      return end < 0 ? off + 1 : end;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (off + 1 >= buf.length) return -1;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= limit) return -1;
      if (end < 0) end = off + 2;
      limit = target;
      off = target;
      continue;
    }
    if (kind !== 0 || len > MAX_LABEL) return -1;
    wireLen += len + 1;
    if (wireLen > MAX_NAME_WIRE || off + 1 + len > buf.length) return -1;
    off += len + 1;
  }
}

/** Case-insensitive comparison of two uncompressed wire names of the same length. */
export function wireNamesEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  for (let i = 0; i < len; i++) {
    let x = a[aOff + i]!;
    let y = b[bOff + i]!;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

/**
 * The canonical key of a configured name: what readName builds from the same octets (ASCII
 * lower-cased, RFC 1035 escapes for octets outside printable ASCII), so a record named "é.test"
 * in records.json meets a query for c3 a9 04 74 65 73 74 00. Only ASCII letters change case:
 * String#toLowerCase would also fold "É" into "é", two names that differ on the wire.
 * Configured names have no escapes of their own (config validation refuses backslashes).
 */
export function normalizeName(name: string): string {
  if (name === '.' || name === '') return '.';
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (/^[\x21-\x7e]*$/.test(n)) return n.toLowerCase();
  const bytes = Buffer.from(n, 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    let b = bytes[i]!;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (b === 0x2e) out += '.';
    else if (needsEscape(b)) out += `\\${String(b).padStart(3, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

/** Offset of the dot ending the first label of a canonical name, or -1 for a single label. */
function firstLabelEnd(name: string): number {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c) i += name.charCodeAt(i + 1) >= 0x30 && name.charCodeAt(i + 1) <= 0x39 ? 3 : 1;
    else if (c === 0x2e) return i;
  }
  return -1;
}

/**
 * The wire octets of a canonical name (readName's or normalizeName's form): the exact inverse of
 * readName's escaping, so a name that came off the wire goes back on it octet for octet.
 * Throws on a string no canonical name can be (an empty label, a label over 63 octets).
 */
export function keyToWire(name: string): Buffer {
  if (name === '.') return Buffer.from([0]);
  const out = Buffer.allocUnsafe(MAX_NAME_WIRE + 1);
  let lenAt = 0;
  let pos = 1;
  for (let i = 0; i <= name.length; i++) {
    const c = i < name.length ? name.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      const len = pos - lenAt - 1;
      if (len === 0 || len > MAX_LABEL) throw new Error(`not a canonical name: ${JSON.stringify(name)}`);
      out[lenAt] = len;
      lenAt = pos++;
    } else {
      let b = c;
      if (c === 0x5c) {
        const d = name.charCodeAt(i + 1);
        if (d >= 0x30 && d <= 0x39) {
          b = Number(name.slice(i + 1, i + 4));
          i += 3;
        } else {
          b = d;
          i += 1;
        }
      }
      if (pos >= MAX_NAME_WIRE || b > 0xff || Number.isNaN(b)) throw new Error(`not a canonical name: ${JSON.stringify(name)}`);
      out[pos++] = b;
    }
  }
  if (lenAt + 1 > MAX_NAME_WIRE) throw new Error(`not a canonical name: ${JSON.stringify(name)}`);
  out[lenAt] = 0;
  return Buffer.from(out.subarray(0, lenAt + 1));
}

/** Host-name syntax with labels of 1-63 characters: the common case, accepted in one test. */
const PLAIN_NAME = /^(?:\*\.)?(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$/;

/** Validates a presentation name written in config (no escapes): returns a reason or null. */
export function checkPresentationName(name: string, allowWildcard: boolean): string | null {
  // ASCII names of at most 253 characters fit in 255 octets on the wire.
  if (name.length <= 253 && (allowWildcard || name.charCodeAt(0) !== 0x2a) && PLAIN_NAME.test(name)) return null;
  if (name === '.' || name === '') return null;
  // Checked as written, not in canonical form, whose escapes would count as label octets.
  const labels = (name.endsWith('.') ? name.slice(0, -1) : name).split('.');
  let wire = 1;
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (label.length === 0) return 'has an empty label';
    if (label === '*' && i === 0 && allowWildcard) { wire += 2; continue; }
    if (label.includes('*')) return allowWildcard ? "uses '*' other than as the whole first label" : "contains '*'";
    const bytes = Buffer.byteLength(label, 'utf8');
    if (bytes > MAX_LABEL) return `has a label of ${bytes} octets (at most ${MAX_LABEL})`;
    if (/[\s\\]/.test(label)) return 'contains white space or a backslash';
    wire += bytes + 1;
  }
  if (wire > MAX_NAME_WIRE) return `is ${wire} octets on the wire (at most ${MAX_NAME_WIRE})`;
  return null;
}

/** Parent of a canonical name ("a.b" -> "b", "a\\.b.c" -> "c", "b" -> "."), or null for the root. */
export function parentName(name: string): string | null {
  if (name === '.') return null;
  let dot = name.indexOf('.');
  // The native search decides the common case; only an escape before the dot needs the walk.
  const escape = name.indexOf('\\');
  if (escape >= 0 && (dot < 0 || escape < dot)) dot = firstLabelEnd(name);
  return dot < 0 ? '.' : name.slice(dot + 1);
}

/** True when `name` equals `ancestor` or lies below it. Both normalised. */
export function isSubdomain(name: string, ancestor: string): boolean {
  if (ancestor === '.') return true;
  if (name === ancestor) return true;
  if (!(name.length > ancestor.length && name.endsWith(ancestor))) return false;
  const dot = name.length - ancestor.length - 1;
  if (name.charCodeAt(dot) !== 0x2e) return false;
  // An odd run of backslashes before the dot escapes it: "x\\.example" is one label.
  let slashes = 0;
  for (let i = dot - 1; i >= 0 && name.charCodeAt(i) === 0x5c; i--) slashes++;
  return slashes % 2 === 0;
}
