// Renames the names of a DNS reply on the wire, for a `rewrite` stage that resolves one name with
// another's data: the client must see its own names again wherever the upstream wrote the other's.

import { HEADER_SIZE, MAX_LABEL, MAX_NAME_WIRE, QType } from './constants.js';
import { RDATA_NAMES, scanMessage, type MessageScan } from './message.js';
import { keyToWire, normalizeName, parentName, readName, skipName } from './name.js';

/**
 * Maps a canonical name (readName's form: lower-case, no trailing dot, RFC 1035 escapes, "." for
 * the root) to the name to write in its place, or null to keep it as it is.
 */
export type NameMapper = (name: string) => string | null;

/** One mapping: `from` becomes `to`; with `suffix`, so does every name below `from`. */
export interface RenameRule {
  readonly from: string;
  readonly to: string;
  readonly suffix: boolean;
}

/** SVCB and HTTPS (RFC 9460): not in QType, which the config's type names come from. */
const SVCB = 64;
const HTTPS = 65;

interface Shape {
  /** Octets before the first name. */
  readonly skip: number;
  readonly names: number;
  /** Whether the names may be written as pointers (and pointed to). */
  readonly compress: boolean;
}

/**
 * RFC 3597 section 4 lets only the RFC 1035 types compress names in RDATA; any other type's
 * names go out whole, as a resolver may not know to follow a pointer there (SRV: RFC 2782,
 * DNAME: RFC 6672, SVCB: RFC 9460). Later names never point into them either.
 */
const COMPRESSIBLE = new Set<number>([QType.NS, QType.CNAME, QType.PTR, QType.MX, QType.SOA]);

/**
 * Class-IN types whose RDATA names are renamed: the ones scanMessage already checks, plus the
 * TargetName of SVCB/HTTPS, which browsers ask for on every page and which may name the
 * upstream's host (AliasMode). The rest (RRSIG's signer, NSEC's next name, NAPTR) is copied
 * as it is: those records are bound to the upstream's zone and no longer verify once renamed.
 */
const SHAPES = new Map<number, Shape>([
  ...Object.entries(RDATA_NAMES).map(([type, s]): [number, Shape] => [Number(type), { skip: s.skip, names: s.names, compress: COMPRESSIBLE.has(Number(type)) }]),
  [SVCB, { skip: 2, names: 1, compress: false }],
  [HTTPS, { skip: 2, names: 1, compress: false }],
]);

function shapeOf(type: number, klass: number): Shape | undefined {
  return klass === 1 ? SHAPES.get(type) : undefined;
}

/** The largest DNS message (TCP length prefix). */
const MAX_MESSAGE = 0xffff;
/** Pointers hold 14 bits of offset. */
const MAX_POINTER = 0x3fff;
/** Room past MAX_MESSAGE for one name or fixed part, so writes check the size only between them. */
const scratch = Buffer.allocUnsafe(MAX_MESSAGE + 1024);
/** Hash of a name's octets (hashLabel) -> where in `scratch` it was first written. */
const written = new Map<number, number>();

/**
 * What the first pass decided, per name in message order (question, then each record's owner
 * and RDATA names): the octets to write instead, or null to copy the name. Shared between
 * calls, as the mapper is the only code that could call in again (see `busy`).
 */
const sharedPlan: (Uint8Array | null)[] = [];
/** The first pass's decisions by name, and by offset for names that are one pointer to a name read. */
interface Memo {
  readonly byName: Map<string, Uint8Array | null>;
  readonly byOffset: Map<number, Uint8Array | null>;
}
const sharedMemo: Memo = { byName: new Map(), byOffset: new Map() };
let busy = false;

/**
 * Wire octets of names mappers returned, so a busy rule costs keyToWire once, not per reply.
 * Each in its own small array: a Buffer from keyToWire would pin a shared 8 KiB pool slab.
 */
const wireCache = new Map<string, Uint8Array>();
const WIRE_CACHE_MAX = 1024;

/**
 * Applies `map` to the question name, every owner name (but OPT's root) and the RDATA names of
 * the types in SHAPES, and returns the message written again with names compressed as RFC 1035
 * 4.1.4 suggests (pointers to earlier names and their suffixes; never in or into SRV, DNAME,
 * SVCB, HTTPS RDATA). Header, counts, types, classes, TTLs and other RDATA (OPT included) are
 * copied as they are; names the mapper keeps keep their octets, case included. Renamed names
 * are written as keyToWire spells what the mapper returned.
 *
 * Returns `buf` itself when the mapper changed no name, so the usual reply costs no copy.
 * Returns a reason string, never throws (but for what `map` throws), when the message cannot
 * be renamed: it is malformed (anything scanMessage refuses, such as pointer loops, offsets
 * past the end, truncated RDATA, or RDATA whose names do not fit RDLENGTH), a mapped name is
 * not a name of at most 255 octets (a suffix rule made it too long: no record can carry it, so
 * the caller should answer SERVFAIL rather than drop records and change the answer), or the
 * renamed message would exceed 65535 octets. `scan`, when given, must be scanMessage(buf).
 */
export function renameMessage(buf: Buffer, map: NameMapper, scan?: MessageScan): Buffer | string {
  const s = scan ?? scanMessage(buf);
  if (typeof s === 'string') return `malformed message: ${s}`;
  const reentered = busy;
  const plan = reentered ? [] : sharedPlan;
  const memo: Memo = reentered ? { byName: new Map(), byOffset: new Map() } : sharedMemo;
  busy = true;
  try {
    const changed = decide(buf, s, map, plan, memo);
    if (changed !== true) return changed === false ? buf : changed;
    return write(buf, s, plan);
  } finally {
    // Keeps nothing of this message alive until the next one.
    // Map#clear allocates a fresh table even when empty: an untouched reply skips written's.
    if (written.size > 0) written.clear();
    plan.length = 0;
    memo.byName.clear();
    memo.byOffset.clear();
    busy = reentered;
  }
}

/** The octets for a name the mapper returned, or null when it is no name of at most 255 octets. */
function wireOf(name: string): Uint8Array | null {
  let wire = wireCache.get(name);
  if (wire !== undefined) return wire;
  try {
    wire = Uint8Array.from(keyToWire(name));
  } catch {
    return null;
  }
  if (wireCache.size >= WIRE_CACHE_MAX) wireCache.clear();
  wireCache.set(name, wire);
  return wire;
}

/**
 * First pass: reads every name, calls the mapper once per distinct one (records of an RRset
 * share their owner) and fills `plan`. True when a name changes, false when none does, or why
 * the message cannot be renamed.
 */
function decide(buf: Buffer, scan: MessageScan, map: NameMapper, plan: (Uint8Array | null)[], memo: Memo): boolean | string {
  let changed = false;
  let end = 0;
  const consider = (off: number): string | null => {
    // A name that is one pointer to a name already read needs no second reading.
    if (buf[off]! >= 0xc0 && off + 1 < buf.length) {
      const known = memo.byOffset.get(((buf[off]! & 0x3f) << 8) | buf[off + 1]!);
      if (known !== undefined) {
        plan.push(known);
        end = off + 2;
        return null;
      }
    }
    const n = readName(buf, off);
    if (n === null) return `malformed name at offset ${off}`;
    end = n.end;
    let wire = memo.byName.get(n.name);
    if (wire === undefined) {
      const to = map(n.name);
      if (to === null || to === n.name) wire = null;
      else {
        wire = wireOf(to);
        if (wire === null) return `${JSON.stringify(n.name)} maps to ${JSON.stringify(to)}, not a name of at most 255 octets`;
        changed = true;
      }
      memo.byName.set(n.name, wire);
    }
    plan.push(wire);
    if (buf[off]! < 0xc0) memo.byOffset.set(off, wire);
    return null;
  };
  const problem = consider(HEADER_SIZE);
  if (problem !== null) return problem;
  for (const r of scan.records) {
    if (r.type !== QType.OPT) {
      const p = consider(r.start);
      if (p !== null) return p;
    }
    const shape = shapeOf(r.type, r.klass);
    if (shape === undefined) continue;
    const rdEnd = r.rdStart + r.rdLength;
    let o = r.rdStart + shape.skip;
    if (o > rdEnd) return `type ${r.type} RDATA too short`;
    for (let i = 0; i < shape.names; i++) {
      const p = consider(o);
      if (p !== null) return p;
      if (end > rdEnd) return `type ${r.type} RDATA name overruns RDLENGTH`;
      o = end;
    }
  }
  return changed;
}

/** Why write() gave up; -1 and -2 are returned by putName. */
const MALFORMED = -1;
const TOO_BIG = -2;

/** Offset in the source just past the name putName wrote last (past its first pointer, if any). */
let nameEnd = 0;
/** The name being written, flat (pointers followed), and where its labels start. */
const flat = Buffer.allocUnsafe(MAX_NAME_WIRE);
const labelAt = new Int32Array(128);
/** Hash of the suffix starting at each label, so `written` needs no string per suffix. */
const suffixHash = new Int32Array(128);

/**
 * FNV-1a over a label's length and octets, chained to the hash of the labels after it: equal
 * suffixes hash equally. Case counts, unlike in DNS comparisons: a pointer to "Example.org"
 * would change the case of a kept "example.org", and kept names keep their octets.
 */
function hashLabel(rest: number, at: number): number {
  const len = flat[at]!;
  let h = Math.imul(rest ^ len, 0x01000193);
  for (let i = at + 1; i <= at + len; i++) h = Math.imul(h ^ flat[i]!, 0x01000193);
  return h;
}

/** Whether the suffix at `at` of `flat` has the very octets of the name at `out` of `scratch`. */
function sameOctets(at: number, out: number): boolean {
  for (;;) {
    // Our own pointers, which always point backwards.
    while ((scratch[out]! & 0xc0) === 0xc0) out = ((scratch[out]! & 0x3f) << 8) | scratch[out + 1]!;
    const len = flat[at]!;
    if (len !== scratch[out]) return false;
    if (len === 0) return true;
    for (let i = 1; i <= len; i++) if (flat[at + i] !== scratch[out + i]) return false;
    at += len + 1;
    out += len + 1;
  }
}

/**
 * Writes the name at `off` of `src` (which may hold pointers: they are followed, strictly
 * backwards as readName demands) at `pos` of `scratch`. With `compress`, the longest suffix
 * already written with the same octets becomes a pointer, and the suffixes written here are
 * remembered for later names. Returns the position past the name, or MALFORMED/TOO_BIG; sets
 * `nameEnd`.
 */
function putName(src: Uint8Array, off: number, compress: boolean, pos: number): number {
  if (pos > MAX_MESSAGE) return TOO_BIG;
  let n = 0;
  let labels = 0;
  let limit = off;
  nameEnd = -1;
  for (;;) {
    if (off >= src.length) return MALFORMED;
    const len = src[off]!;
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= src.length) return MALFORMED;
      const target = ((len & 0x3f) << 8) | src[off + 1]!;
      if (target >= limit) return MALFORMED;
      if (nameEnd < 0) nameEnd = off + 2;
      limit = off = target;
      continue;
    }
    if (len === 0) {
      if (nameEnd < 0) nameEnd = off + 1;
      break;
    }
    // Room left for the root's octet: 255 in all (RFC 1035 2.3.4).
    if (len > MAX_LABEL || n + len + 1 >= MAX_NAME_WIRE || off + 1 + len > src.length) return MALFORMED;
    labelAt[labels++] = n;
    for (let i = 0; i <= len; i++) flat[n + i] = src[off + i]!;
    n += len + 1;
    off += len + 1;
  }
  flat[n++] = 0;
  // The first label (from the left) whose suffix is already written; `labels` when none is.
  let hit = labels;
  let target = -1;
  if (compress) {
    let h = 0;
    for (let i = labels - 1; i >= 0; i--) suffixHash[i] = h = hashLabel(h, labelAt[i]!);
    for (let i = 0; i < labels; i++) {
      const at = written.get(suffixHash[i]!);
      if (at !== undefined && sameOctets(labelAt[i]!, at)) {
        hit = i;
        target = at;
        break;
      }
    }
    for (let i = 0; i < hit; i++) {
      const at = pos + labelAt[i]!;
      // A suffix hashing like another one keeps the first: only compression is lost.
      if (at <= MAX_POINTER && !written.has(suffixHash[i]!)) written.set(suffixHash[i]!, at);
    }
  }
  const head = target < 0 ? n : labelAt[hit]!;
  for (let i = 0; i < head; i++) scratch[pos + i] = flat[i]!;
  if (target < 0) return pos + n;
  scratch[pos + head] = 0xc0 | (target >> 8);
  scratch[pos + head + 1] = target & 0xff;
  return pos + head + 2;
}

function copy(buf: Buffer, from: number, to: number, pos: number): number {
  if (pos + (to - from) > MAX_MESSAGE) return TOO_BIG;
  // A loop beats Buffer#copy (a C++ call with argument checks) for the few octets copied here.
  for (let i = from; i < to; i++) scratch[pos++] = buf[i]!;
  return pos;
}

function failure(code: number): string {
  return code === TOO_BIG ? `renamed message over ${MAX_MESSAGE} octets` : 'malformed name while writing';
}

/** Second pass: the message again in `scratch` as `plan` says, then copied out at its final size. */
function write(buf: Buffer, scan: MessageScan, plan: readonly (Uint8Array | null)[]): Buffer | string {
  let next = 0;
  /** Writes the next name of the plan, found at `off` of `buf`; sets `nameEnd`. */
  const put = (off: number, compress: boolean, pos: number): number => {
    const wire = plan[next++];
    if (wire === undefined) return MALFORMED;
    if (wire === null) return putName(buf, off, compress, pos);
    // The original still says where the name ends.
    const at = putName(wire, 0, compress, pos);
    nameEnd = skipName(buf, off);
    return nameEnd < 0 ? MALFORMED : at;
  };
  let pos = copy(buf, 0, HEADER_SIZE, 0);
  pos = put(HEADER_SIZE, true, pos);
  if (pos < 0) return failure(pos);
  pos = copy(buf, scan.questionEnd - 4, scan.questionEnd, pos);
  if (pos < 0) return failure(pos);
  for (const r of scan.records) {
    if (r.type === QType.OPT) {
      // scanMessage made sure OPT is owned by the root, which has nothing to rename.
      if (pos > MAX_MESSAGE) return failure(TOO_BIG);
      scratch[pos++] = 0;
    } else {
      pos = put(r.start, true, pos);
      if (pos < 0) return failure(pos);
    }
    // TYPE, CLASS and TTL as they were; RDLENGTH once the RDATA is written.
    pos = copy(buf, r.ttlOffset - 4, r.ttlOffset + 4, pos);
    if (pos < 0) return failure(pos);
    const lenAt = pos;
    pos += 2;
    const rdEnd = r.rdStart + r.rdLength;
    let o = r.rdStart;
    const shape = shapeOf(r.type, r.klass);
    if (shape !== undefined) {
      pos = copy(buf, o, o + shape.skip, pos);
      if (pos < 0) return failure(pos);
      o += shape.skip;
      for (let i = 0; i < shape.names; i++) {
        pos = put(o, shape.compress, pos);
        if (pos < 0) return failure(pos);
        if (nameEnd > rdEnd) return failure(MALFORMED);
        o = nameEnd;
      }
    }
    pos = copy(buf, o, rdEnd, pos);
    if (pos < 0) return failure(pos);
    const rdLength = pos - lenAt - 2;
    scratch[lenAt] = rdLength >> 8;
    scratch[lenAt + 1] = rdLength & 0xff;
  }
  const out = Buffer.allocUnsafe(pos);
  if (pos <= 512) for (let i = 0; i < pos; i++) out[i] = scratch[i]!;
  else scratch.copy(out, 0, 0, pos);
  return out;
}

/**
 * Builds the mapper for a list of rules (given in the direction the reply is renamed: for a
 * stage that asks `foo.novalocal` for `www.example.org`, from `foo.novalocal` to
 * `www.example.org`). A name matching an exact rule takes it; otherwise the longest `from` of
 * a suffix rule at or above the name has its suffix swapped (`a.b.novalocal` under `novalocal`
 * -> `prod.example.com` becomes `a.b.prod.example.com`). Names are taken in presentation or
 * canonical form. Throws on a name that is not one, or on two rules of one kind for one name.
 */
export function mapperFromRules(rules: readonly RenameRule[]): NameMapper {
  const exact = new Map<string, string>();
  const suffixes = new Map<string, string>();
  for (const rule of rules) {
    const from = normalizeName(rule.from);
    const to = normalizeName(rule.to);
    // keyToWire throws on an empty label, a label over 63 or a name over 255 octets.
    keyToWire(from);
    keyToWire(to);
    const table = rule.suffix ? suffixes : exact;
    if (table.has(from)) throw new Error(`two ${rule.suffix ? 'suffix' : 'exact'} rules for ${JSON.stringify(from)}`);
    table.set(from, to);
  }
  return (name) => {
    const to = exact.get(name);
    if (to !== undefined) return to;
    if (suffixes.size === 0) return null;
    // From the name upwards, so the first suffix found is the longest.
    for (let at: string | null = name; at !== null; at = parentName(at)) {
      const swap = suffixes.get(at);
      if (swap !== undefined) return swapSuffix(name, at, swap);
    }
    return null;
  };
}

/** `name` (at or below `from`, as parentName found it) with `from` replaced by `to`. */
function swapSuffix(name: string, from: string, to: string): string {
  let prefix: string;
  if (name === from) prefix = '';
  else if (from === '.') prefix = name;
  else prefix = name.slice(0, name.length - from.length - 1);
  if (prefix === '') return to;
  return to === '.' ? prefix : `${prefix}.${to}`;
}
