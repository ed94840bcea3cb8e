// RFC 1035 master-file (zone file) parser: text in, records with wire RDATA and source positions out.
// Hand-written: the npm candidates lose records silently and give no positions (docs/zonefile.md).

import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { MAX_LABEL, MAX_NAME_WIRE, QClass, QType, typeFromName, typeName } from './constants.js';
import { readName } from './name.js';
import { parseIp, parseIPv6 } from '../net/address.js';

/** One resource record as the file states it. */
export interface ZoneRecord {
  /** Canonical owner: lower-case ASCII, absolute, no trailing dot, escaped as readName does. */
  name: string;
  type: number;
  /** Always IN (1): other classes are refused. */
  class: number;
  ttl: number;
  /** RDATA octets; names in it are uncompressed, ASCII lower-cased (keyToWire's form). */
  rdata: Buffer;
  file: string;
  line: number;
  column: number;
}

export interface ZoneError {
  file: string;
  line: number;
  column: number;
  message: string;
}

export interface ZoneParseOptions {
  /** Origin before any $ORIGIN, e.g. the zone's name; relative names without one are errors. */
  origin?: string;
  /** TTL for records without one before any $TTL (instead of the previous-TTL/SOA rules). */
  defaultTtl?: number;
  /** $INCLUDE nesting allowed below the top file (default 8); 0 refuses $INCLUDE. */
  maxIncludeDepth?: number;
  /** Errors collected before parsing stops (default 100). */
  maxErrors?: number;
  /** Records accepted before parsing stops with an error (default 1,000,000). */
  maxRecords?: number;
  /** Longest physical line in octets (default 65,536). */
  maxLineLength?: number;
  /** Longest entry, parentheses included, in octets (default 1 MiB). */
  maxEntryLength?: number;
  /** Octets read over all files, includes counted (default 256 MiB). */
  maxTotalBytes?: number;
}

export interface ZoneParseResult {
  records: ZoneRecord[];
  errors: ZoneError[];
}

/** "file:line:col: message", the form every error is shown in. */
export function formatZoneError(e: ZoneError): string {
  return `${e.file}:${e.line}:${e.column}: ${e.message}`;
}

/** Parses the zone file at `path`, following its $INCLUDEs relative to each including file. */
export function parseZoneFile(path: string, options: ZoneParseOptions = {}): ZoneParseResult {
  const p = new Parser(options);
  try {
    p.parseFile(path, [], p.initialState(), { file: path, line: 0, column: 0 });
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }
  return p.result();
}

/**
 * Parses zone text held in memory; `file` names it in positions and anchors relative $INCLUDEs
 * (its directory), which are read from disk.
 */
export function parseZoneText(text: string | Buffer, file: string, options: ZoneParseOptions = {}): ZoneParseResult {
  const p = new Parser(options);
  const latin1 = typeof text === 'string' ? Buffer.from(text, 'utf8').toString('latin1') : text.toString('latin1');
  try {
    if (p.charge(latin1.length, { file, line: 0, column: 0 })) p.parseText(latin1, file, [safeRealpath(file)], p.initialState());
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }
  return p.result();
}

function safeRealpath(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return resolve(file);
  }
}

/** Stops the parse once the error or record budget is spent. */
class Stop extends Error {}

interface Position {
  file: string;
  line: number;
  column: number;
}

/** What a file's lines depend on; an $INCLUDEd file gets a copy, so its changes end with it. */
interface State {
  origin: Buffer | null;
  /** $TTL, or null before any. */
  defaultTtl: number | null;
  /** TTL of the previous record (RFC 1035 5.1), or null before the first. */
  lastTtl: number | null;
  /** Owner for lines starting with white space; null before the first owner. */
  lastOwner: string | null;
  /** The last owner was bad: blank-owner lines after it are skipped without another error. */
  ownerBroken: boolean;
}

/** Meta and pseudo types that never stand in a zone file (RFC 6895 3.1). */
const META_TYPES = new Set<number>([0, QType.OPT, QType.IXFR, QType.AXFR, QType.MAILB, QType.MAILA, QType.ANY]);

/**
 * Mnemonics of common types constants.ts has no use for: known here so "DS" is not reported as
 * an unknown type, and accepted in the RFC 3597 \# form only.
 */
const GENERIC_ONLY: Record<string, number> = {
  HINFO: 13, RP: 17, AFSDB: 18, LOC: 29, NAPTR: 35, DS: 43, SSHFP: 44, RRSIG: 46, NSEC: 47,
  DNSKEY: 48, NSEC3: 50, NSEC3PARAM: 51, TLSA: 52, CDS: 59, CDNSKEY: 60, OPENPGPKEY: 61,
  CSYNC: 62, ZONEMD: 63, SVCB: 64, HTTPS: 65, SPF: 99, URI: 256,
};

/** Types with a presentation-form parser below. */
const PARSED = new Set<number>([QType.A, QType.AAAA, QType.NS, QType.CNAME, QType.SOA, QType.PTR, QType.MX, QType.TXT, QType.SRV, QType.DNAME, QType.CAA]);

const MAX_TTL = 0x7fffffff;
const MAX_RDATA = 0xffff;
/** Room for many records and always for one of the largest. */
const SLAB_SIZE = 1 << 20;

const TTL_HINT = 'a TTL such as 3600 or 1h';

/** Thrown inside an entry: the entry is dropped and the error recorded at the token. */
class EntryError extends Error {
  constructor(readonly at: number, message: string) {
    super(message);
  }
}

/** Shows an octet string (latin1 in memory) as the UTF-8 text it most likely was. */
function show(s: string): string {
  const text = Buffer.from(s, 'latin1').toString('utf8');
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text);
}

class Parser {
  private readonly records: ZoneRecord[] = [];
  private readonly errors: ZoneError[] = [];
  private readonly maxIncludeDepth: number;
  private readonly maxErrors: number;
  private readonly maxRecords: number;
  private readonly maxLineLength: number;
  private readonly maxEntryLength: number;
  private readonly maxTotalBytes: number;
  private totalBytes = 0;
  private readonly types = new Map<string, number | undefined>();
  /** The files being read, as named to the user, outermost first (for loop messages). */
  private readonly shown: string[] = [];

  // The current entry's tokens, reused between entries to spare the garbage collector.
  private tokText: string[] = [];
  private tokLine: number[] = [];
  private tokCol: number[] = [];
  private tokQuoted: boolean[] = [];
  private ntok = 0;
  private file = '';

  /**
   * RDATA is written in place into a shared slab and handed out as a view of it: one copy and
   * one allocation fewer per record than building each in a scratch buffer.
   */
  private slab = Buffer.allocUnsafe(SLAB_SIZE);
  private slabUsed = 0;
  /** Where the RDATA under construction starts in the slab, and its length so far. */
  private base = 0;
  private rdLen = 0;
  /** Name wire under construction. */
  private readonly nameBuf = Buffer.allocUnsafe(MAX_NAME_WIRE + 1);

  constructor(private readonly options: ZoneParseOptions) {
    this.maxIncludeDepth = options.maxIncludeDepth ?? 8;
    this.maxErrors = options.maxErrors ?? 100;
    this.maxRecords = options.maxRecords ?? 1_000_000;
    this.maxLineLength = options.maxLineLength ?? 65_536;
    this.maxEntryLength = options.maxEntryLength ?? 1 << 20;
    this.maxTotalBytes = options.maxTotalBytes ?? 256 * 1024 * 1024;
  }

  initialState(): State {
    let origin: Buffer | null = null;
    if (this.options.origin !== undefined) {
      const o = this.options.origin;
      const abs = o.endsWith('.') ? o : `${o}.`;
      const len = this.nameWire(Buffer.from(abs, 'utf8').toString('latin1'), null, this.nameBuf, 0);
      if (typeof len === 'string') throw new Error(`origin ${JSON.stringify(o)} ${len}`);
      origin = Buffer.from(this.nameBuf.subarray(0, len));
    }
    return { origin, defaultTtl: this.options.defaultTtl ?? null, lastTtl: null, lastOwner: null, ownerBroken: false };
  }

  result(): ZoneParseResult {
    return { records: this.records, errors: this.errors };
  }

  private error(pos: Position, message: string): void {
    this.errors.push({ file: pos.file, line: pos.line, column: pos.column, message });
    if (this.errors.length >= this.maxErrors) {
      this.errors.push({ file: pos.file, line: pos.line, column: pos.column, message: `stopped after ${this.maxErrors} errors` });
      throw new Stop();
    }
  }

  /** Reads and parses one file; `chain` is the realpaths of the files including it. */
  parseFile(path: string, chain: string[], state: State, at: Position): void {
    let real: string;
    let buf: Buffer;
    try {
      real = realpathSync(path);
      const st = statSync(real);
      // A device or FIFO could be read forever; only regular files are zone files.
      if (!st.isFile()) throw new Error('not a regular file');
      if (this.totalBytes + st.size > this.maxTotalBytes) throw new Error(`reading it would pass ${this.maxTotalBytes} octets in all`);
      const loop = chain.indexOf(real);
      if (loop >= 0) {
        this.error(at, `include loop: ${[...this.shown.slice(loop), path].join(' -> ')}`);
        return;
      }
      buf = readFileSync(real);
    } catch (e) {
      if (e instanceof Stop) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      this.error(at, `cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
      return;
    }
    this.totalBytes += buf.length;
    this.parseText(buf.toString('latin1'), path, [...chain, real], state);
  }

  /** Counts text held in memory against maxTotalBytes; false (and an error) when over. */
  charge(octets: number, at: Position): boolean {
    if (this.totalBytes + octets > this.maxTotalBytes) {
      this.error(at, `${octets} octets of zone text (at most ${this.maxTotalBytes} in all)`);
      return false;
    }
    this.totalBytes += octets;
    return true;
  }

  /** `text` holds one octet per character (latin1), so names keep their exact octets. */
  parseText(text: string, file: string, chain: string[], state: State): void {
    this.shown.push(file);
    this.lex(text, file, chain, state);
    this.shown.pop();
  }

  /**
   * Splits the text into entries (one line, or several joined by parentheses) and hands each to
   * entry(). Tokens keep their escapes; quoted ones lose only their quotes.
   */
  private lex(text: string, file: string, chain: string[], state: State): void {
    const n = text.length;
    let i = 0;
    let line = 1;
    let lineStart = 0;
    while (i < n) {
      // One entry starts here, at the start of a line.
      this.ntok = 0;
      this.file = file;
      const blankOwner = text.charCodeAt(i) === 0x20 || text.charCodeAt(i) === 0x09;
      let depth = 0;
      let openLine = 0;
      let openCol = 0;
      const entryStart = i;
      let bad: Position | null = null;
      let badMsg = '';
      for (;;) {
        if (i >= n) break;
        const c = text.charCodeAt(i);
        if (c === 0x0a) {
          if (i - lineStart > this.maxLineLength && bad === null) {
            bad = { file, line, column: this.maxLineLength + 1 };
            badMsg = `line longer than ${this.maxLineLength} octets`;
          }
          i++;
          line++;
          lineStart = i;
          if (depth === 0) break;
          if (i - entryStart > this.maxEntryLength && bad === null) {
            bad = { file, line: openLine, column: openCol };
            badMsg = `entry longer than ${this.maxEntryLength} octets (parenthesis opened at ${openLine}:${openCol})`;
          }
          continue;
        }
        if (c === 0x20 || c === 0x09 || c === 0x0d) {
          i++;
          continue;
        }
        if (c === 0x3b) {
          while (i < n && text.charCodeAt(i) !== 0x0a) i++;
          continue;
        }
        if (c === 0x28) {
          if (depth === 0) {
            openLine = line;
            openCol = i - lineStart + 1;
          } else if (bad === null) {
            bad = { file, line, column: i - lineStart + 1 };
            badMsg = `nested parenthesis (the one opened at ${openLine}:${openCol} is still open)`;
          }
          depth++;
          i++;
          continue;
        }
        if (c === 0x29) {
          if (depth === 0) {
            if (bad === null) {
              bad = { file, line, column: i - lineStart + 1 };
              badMsg = "unbalanced ')': no parenthesis is open";
            }
          } else {
            depth--;
          }
          i++;
          continue;
        }
        const col = i - lineStart + 1;
        if (col > this.maxLineLength) {
          // Stop tokenising a hostile line early; the newline check would report it too late.
          if (bad === null) {
            bad = { file, line, column: this.maxLineLength + 1 };
            badMsg = `line longer than ${this.maxLineLength} octets`;
          }
          while (i < n && text.charCodeAt(i) !== 0x0a) i++;
          continue;
        }
        if (c === 0x22) {
          let j = i + 1;
          let closed = false;
          while (j < n) {
            const d = text.charCodeAt(j);
            if (d === 0x5c && text.charCodeAt(j + 1) !== 0x0a) {
              j += 2;
              continue;
            }
            if (d === 0x22) {
              closed = true;
              break;
            }
            if (d === 0x0a) break;
            j++;
          }
          if (!closed) {
            if (bad === null) {
              bad = { file, line, column: col };
              badMsg = 'unterminated quoted string (a quote must close on its own line)';
            }
            i = Math.min(j, n);
            continue;
          }
          this.push(text.slice(i + 1, j), line, col, true);
          i = j + 1;
          continue;
        }
        let j = i;
        while (j < n) {
          const d = text.charCodeAt(j);
          if (d === 0x5c) {
            // An escape takes the next octet whatever it is, except the line's end.
            if (j + 1 < n && text.charCodeAt(j + 1) !== 0x0a) j += 2;
            else j++;
            continue;
          }
          if (d === 0x20 || d === 0x09 || d === 0x0a || d === 0x0d || d === 0x3b || d === 0x28 || d === 0x29 || d === 0x22) break;
          j++;
        }
        this.push(text.slice(i, j), line, col, false);
        i = j;
      }
      if (i >= n && i - lineStart > this.maxLineLength && bad === null) {
        bad = { file, line, column: this.maxLineLength + 1 };
        badMsg = `line longer than ${this.maxLineLength} octets`;
      }
      if (depth > 0 && bad === null) {
        bad = { file, line: openLine, column: openCol };
        badMsg = `unbalanced parenthesis opened at ${openLine}:${openCol}: the file ends before ')'`;
      }
      if (bad !== null) {
        this.error(bad, badMsg);
        // Blank-owner lines after a broken entry may belong to an owner it meant to set.
        if (!blankOwner) state.ownerBroken = true;
        continue;
      }
      if (this.ntok > 0) this.entry(blankOwner, chain, state);
    }
  }

  private push(text: string, line: number, col: number, quoted: boolean): void {
    const k = this.ntok++;
    this.tokText[k] = text;
    this.tokLine[k] = line;
    this.tokCol[k] = col;
    this.tokQuoted[k] = quoted;
  }

  private pos(k: number): Position {
    const t = Math.min(k, this.ntok - 1);
    return { file: this.file, line: this.tokLine[t]!, column: this.tokCol[t]! };
  }

  /** Where an error about a missing token goes: just past the last token of the entry. */
  private endPos(): Position {
    const t = this.ntok - 1;
    return { file: this.file, line: this.tokLine[t]!, column: this.tokCol[t]! + this.tokText[t]!.length + (this.tokQuoted[t] ? 2 : 0) };
  }

  private entry(blankOwner: boolean, chain: string[], state: State): void {
    try {
      const first = this.tokText[0]!;
      if (!blankOwner && !this.tokQuoted[0] && first.charCodeAt(0) === 0x24) {
        this.directive(first.toUpperCase(), chain, state);
        return;
      }
      this.record(blankOwner, state);
    } catch (e) {
      if (!(e instanceof EntryError)) throw e;
      this.error(e.at < this.ntok ? this.pos(e.at) : this.endPos(), e.message);
    }
  }

  private directive(name: string, chain: string[], state: State): void {
    switch (name) {
      case '$ORIGIN': {
        this.expectCount(2, 2, '$ORIGIN takes one domain name');
        state.origin = this.name(1, state.origin);
        return;
      }
      case '$TTL': {
        this.expectCount(2, 2, '$TTL takes one TTL');
        state.defaultTtl = this.ttl(1);
        return;
      }
      case '$INCLUDE': {
        this.expectCount(2, 3, '$INCLUDE takes a file name and an optional origin');
        if (this.tokText[1]!.length === 0) throw new EntryError(1, 'expected a file name after $INCLUDE');
        const origin = this.ntok === 3 ? this.name(2, state.origin) : state.origin;
        const depth = chain.length - 1;
        if (depth >= this.maxIncludeDepth) {
          throw new EntryError(0, `$INCLUDE nested deeper than ${this.maxIncludeDepth} files`);
        }
        const rel = Buffer.from(this.decodeText(1), 'latin1').toString('utf8');
        const target = isAbsolute(rel) ? rel : join(dirname(this.file), rel);
        const at = this.pos(0);
        const file = this.file;
        // RFC 1035 5.1: the included file starts from the given origin and leaves ours as it was.
        this.parseFile(target, chain, { ...state, origin, lastOwner: null, ownerBroken: false }, at);
        this.file = file;
        return;
      }
      case '$GENERATE':
        throw new EntryError(0, '$GENERATE is not supported');
      default:
        throw new EntryError(0, `unknown directive ${show(name)} (expected $ORIGIN, $TTL or $INCLUDE)`);
    }
  }

  private expectCount(min: number, max: number, what: string): void {
    if (this.ntok < min) throw new EntryError(this.ntok, `${what}: expected ${min === max ? 'it' : 'more'} here`);
    if (this.ntok > max) throw new EntryError(max, `${what}: unexpected ${show(this.tokText[max]!)}`);
  }

  private record(blankOwner: boolean, state: State): void {
    let k = 0;
    let owner: string;
    if (blankOwner) {
      if (state.ownerBroken) return;
      if (state.lastOwner === null) throw new EntryError(0, 'no owner: the line starts with white space but no record came before it');
      owner = state.lastOwner;
    } else {
      state.ownerBroken = true;
      if (this.tokQuoted[0]) throw new EntryError(0, `expected an owner name, not the quoted string ${show(this.tokText[0]!)}`);
      const len = this.nameWire(this.tokText[0]!, state.origin, this.nameBuf, 0);
      if (typeof len === 'string') throw new EntryError(0, `${show(this.tokText[0]!)} ${len}`);
      // readName's own presentation form, so owners match the keys the rest of linedns uses.
      owner = readName(this.nameBuf, 0, false)!.name;
      state.lastOwner = owner;
      state.ownerBroken = false;
      k = 1;
    }
    let ttl: number | null = null;
    let classSeen = false;
    for (;;) {
      if (k >= this.ntok) throw new EntryError(k, 'expected a type such as A or MX');
      const t = this.tokText[k]!;
      const c = t.charCodeAt(0);
      if (c >= 0x30 && c <= 0x39 && !this.tokQuoted[k]) {
        if (ttl !== null) throw new EntryError(k, 'a second TTL: expected a class or a type');
        ttl = this.ttl(k);
        k++;
        continue;
      }
      const cls = this.classOf(k);
      if (cls !== null) {
        if (classSeen) throw new EntryError(k, 'a second class: expected a type such as A or MX');
        if (cls !== QClass.IN) throw new EntryError(k, `class ${t.toUpperCase()} is not supported (only IN)`);
        classSeen = true;
        k++;
        continue;
      }
      break;
    }
    const typeTok = this.tokText[k]!;
    const type = this.tokQuoted[k] ? undefined : this.typeOf(typeTok);
    if (type === undefined) throw new EntryError(k, `unknown type ${show(typeTok)} (expected a type such as A or MX, or TYPEnnn)`);
    if (META_TYPES.has(type)) throw new EntryError(k, `type ${typeName(type)} cannot appear in a zone file`);
    k++;
    if (this.slab.length - this.slabUsed < MAX_RDATA + MAX_NAME_WIRE + 8) {
      this.slab = Buffer.allocUnsafe(SLAB_SIZE);
      this.slabUsed = 0;
    }
    this.base = this.slabUsed;
    this.rdLen = 0;
    let soaMinimum: number | null = null;
    if (k < this.ntok && this.tokText[k] === '\\#' && !this.tokQuoted[k]) {
      this.generic(k + 1);
      if (type === QType.SOA && this.rdLen >= 22) soaMinimum = this.slab.readUInt32BE(this.base + this.rdLen - 4);
    } else if (!PARSED.has(type)) {
      throw new EntryError(k, `type ${typeName(type) === `TYPE${type}` ? typeTok.toUpperCase() : typeName(type)} is only supported in the RFC 3597 form: \\# <length> <hex>`);
    } else {
      soaMinimum = this.rdata(type, k, state.origin);
    }
    if (ttl === null) {
      ttl = state.defaultTtl ?? state.lastTtl ?? soaMinimum;
      if (ttl === null) throw new EntryError(0, 'no TTL: give the record one, or put $TTL before it');
    }
    state.lastTtl = ttl;
    if (this.records.length >= this.maxRecords) {
      this.error(this.pos(0), `more than ${this.maxRecords} records`);
      throw new Stop();
    }
    if (this.rdLen > MAX_RDATA) throw new EntryError(k, `RDATA longer than ${MAX_RDATA} octets`);
    const rdata = this.slab.subarray(this.base, this.base + this.rdLen);
    this.slabUsed += this.rdLen;
    this.records.push({ name: owner, type, class: QClass.IN, ttl, rdata, file: this.file, line: this.tokLine[0]!, column: this.tokCol[0]! });
  }

  /** A type mnemonic or TYPEnnn as a number, memoised: a zone spells its types a few ways only. */
  private typeOf(t: string): number | undefined {
    let v = this.types.get(t);
    if (v === undefined && !this.types.has(t)) {
      v = typeFromName(t) ?? GENERIC_ONLY[t.toUpperCase()];
      if (this.types.size < 1000) this.types.set(t, v);
    }
    return v;
  }

  /** IN, CH, HS, NONE, ANY or CLASSnnn as a number; null when the token is none of them. */
  private classOf(k: number): number | null {
    if (this.tokQuoted[k]) return null;
    const raw = this.tokText[k]!;
    // Most tokens here are types; a length test skips them without case folding.
    if (raw.length !== 2 && raw.length !== 3 && raw.length < 6) return null;
    const t = raw.toUpperCase();
    switch (t) {
      case 'IN': return QClass.IN;
      case 'CH': case 'CS': return QClass.CH;
      case 'HS': return QClass.HS;
      case 'NONE': return QClass.NONE;
      case 'ANY': return QClass.ANY;
    }
    const m = /^CLASS(\d{1,5})$/.exec(t);
    if (m && Number(m[1]) <= 0xffff) return Number(m[1]);
    return null;
  }

  /** A TTL: seconds, or units s/m/h/d/w in any case ("1h30m"), at most 2^31-1 (RFC 2181 8). */
  private ttl(k: number): number {
    const t = this.tokText[k]!;
    const v = this.tokQuoted[k] ? null : parseTtl(t);
    if (v === null) throw new EntryError(k, `expected ${TTL_HINT}, not ${show(t)}`);
    if (v > MAX_TTL) throw new EntryError(k, `TTL ${show(t)} is over 2147483647 seconds`);
    return v;
  }

  private need(k: number, what: string): string {
    if (k >= this.ntok) throw new EntryError(k, `expected ${what}`);
    return this.tokText[k]!;
  }

  private noMore(k: number): void {
    if (k < this.ntok) throw new EntryError(k, `unexpected ${show(this.tokText[k]!)} after the RDATA`);
  }

  private number(k: number, max: number, what: string): number {
    const t = this.need(k, what);
    if (!this.tokQuoted[k] && /^\d{1,10}$/.test(t)) {
      const v = Number(t);
      if (v <= max) return v;
    }
    throw new EntryError(k, `expected ${what}, not ${show(t)}`);
  }

  private put8(v: number): void {
    this.slab[this.base + this.rdLen++] = v;
  }

  private put16(v: number): void {
    this.slab.writeUInt16BE(v, this.base + this.rdLen);
    this.rdLen += 2;
  }

  private put32(v: number): void {
    this.slab.writeUInt32BE(v >>> 0, this.base + this.rdLen);
    this.rdLen += 4;
  }

  /** A name goes straight into the RDATA, the slab having room for one past the limit. */
  private putName(k: number, origin: Buffer | null, what: string): void {
    this.need(k, what);
    if (this.tokQuoted[k]) throw new EntryError(k, `expected a domain name, not the quoted string ${show(this.tokText[k]!)}`);
    const len = this.nameWire(this.tokText[k]!, origin, this.slab, this.base + this.rdLen);
    if (typeof len === 'string') throw new EntryError(k, `${show(this.tokText[k]!)} ${len}`);
    this.rdLen += len;
    if (this.rdLen > MAX_RDATA) throw new EntryError(k, `RDATA longer than ${MAX_RDATA} octets`);
  }

  private putBytes(k: number, b: Uint8Array | string): void {
    const len = b.length;
    if (this.rdLen + len > MAX_RDATA) throw new EntryError(k, `RDATA longer than ${MAX_RDATA} octets`);
    if (typeof b === 'string') this.slab.write(b, this.base + this.rdLen, len, 'latin1');
    else this.slab.set(b, this.base + this.rdLen);
    this.rdLen += len;
  }

  /** Writes the RDATA of a type with a presentation form; returns the SOA minimum for SOA. */
  private rdata(type: number, k: number, origin: Buffer | null): number | null {
    switch (type) {
      case QType.A: {
        const t = this.need(k, 'an IPv4 address such as 192.0.2.1');
        const ip = this.tokQuoted[k] || t.includes(':') ? null : parseIp(t);
        if (ip === null || ip.length !== 4) throw new EntryError(k, `expected an IPv4 address such as 192.0.2.1, not ${show(t)}`);
        this.putBytes(k++, ip);
        break;
      }
      case QType.AAAA: {
        const t = this.need(k, 'an IPv6 address such as 2001:db8::1');
        const ip = this.tokQuoted[k] ? null : parseIPv6(t);
        if (ip === null) throw new EntryError(k, `expected an IPv6 address such as 2001:db8::1, not ${show(t)}`);
        this.putBytes(k++, ip);
        break;
      }
      case QType.NS:
      case QType.CNAME:
      case QType.PTR:
      case QType.DNAME:
        this.putName(k++, origin, 'a domain name');
        break;
      case QType.MX:
        this.put16(this.number(k++, 0xffff, 'an MX preference 0-65535'));
        this.putName(k++, origin, 'a mail exchange name');
        break;
      case QType.SRV:
        this.put16(this.number(k++, 0xffff, 'an SRV priority 0-65535'));
        this.put16(this.number(k++, 0xffff, 'an SRV weight 0-65535'));
        this.put16(this.number(k++, 0xffff, 'an SRV port 0-65535'));
        this.putName(k++, origin, 'an SRV target name');
        break;
      case QType.SOA: {
        this.putName(k++, origin, 'the primary server name (SOA MNAME)');
        this.putName(k++, origin, 'the mailbox name (SOA RNAME)');
        this.put32(this.number(k++, 0xffffffff, 'an SOA serial 0-4294967295'));
        let minimum = 0;
        for (const field of ['refresh', 'retry', 'expire', 'minimum']) {
          if (k >= this.ntok) throw new EntryError(k, `expected the SOA ${field}, ${TTL_HINT}`);
          minimum = this.ttl(k++);
          this.put32(minimum);
        }
        this.noMore(k);
        return minimum;
      }
      case QType.TXT: {
        this.need(k, 'one or more character strings such as "v=spf1 -all"');
        while (k < this.ntok) this.characterString(k++);
        break;
      }
      case QType.CAA: {
        this.put8(this.number(k++, 255, 'CAA flags 0-255'));
        const tag = this.need(k, 'a CAA tag such as issue');
        if (this.tokQuoted[k] || !/^[A-Za-z0-9]{1,255}$/.test(tag)) throw new EntryError(k, `expected a CAA tag of letters and digits such as issue, not ${show(tag)}`);
        this.put8(tag.length);
        this.putBytes(k++, tag);
        this.need(k, 'a CAA value such as "letsencrypt.org"');
        this.putBytes(k, this.decodeText(k));
        k++;
        break;
      }
      default:
        throw new EntryError(k, `no parser for type ${typeName(type)}`);
    }
    this.noMore(k);
    return null;
  }

  /** One <character-string>: a length octet and at most 255 octets. */
  private characterString(k: number): void {
    const s = this.decodeText(k);
    if (s.length > 255) throw new EntryError(k, `character string of ${s.length} octets (at most 255)`);
    this.putBytes(k, String.fromCharCode(s.length) + s);
  }

  /** RFC 3597 RDATA after "\#": a decimal length, then that many octets in hex, in any grouping. */
  private generic(k: number): void {
    const len = this.number(k, MAX_RDATA, 'the RDATA length after \\# (0-65535)');
    let hex = '';
    for (let j = k + 1; j < this.ntok; j++) {
      const t = this.tokText[j]!;
      if (this.tokQuoted[j] || !/^[0-9A-Fa-f]+$/.test(t)) throw new EntryError(j, `expected hexadecimal RDATA, not ${show(t)}`);
      hex += t;
    }
    if (hex.length % 2 !== 0) throw new EntryError(k + 1, 'hexadecimal RDATA has an odd number of digits');
    if (hex.length / 2 !== len) throw new EntryError(k, `\\# says ${len} octets but ${hex.length / 2} follow`);
    this.putBytes(k, Buffer.from(hex, 'hex'));
  }

  /** The octets of a text token: "\DDD" is one octet, "\X" is X (RFC 1035 5.1). */
  private decodeText(k: number): string {
    const t = this.tokText[k]!;
    if (t.indexOf('\\') < 0) return t;
    let out = '';
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c !== 0x5c) {
        out += t[i];
        continue;
      }
      const v = escapeAt(t, i);
      if (v === null) throw new EntryError(k, `bad escape in ${show(t)}: expected \\DDD with DDD at most 255, or \\ before one character`);
      out += String.fromCharCode(v.octet);
      i = v.end - 1;
    }
    return out;
  }

  /** The wire form of the name in token k, relative names completed with `origin`. */
  private name(k: number, origin: Buffer | null): Buffer {
    if (this.tokQuoted[k]) throw new EntryError(k, `expected a domain name, not the quoted string ${show(this.tokText[k]!)}`);
    const len = this.nameWire(this.tokText[k]!, origin, this.nameBuf, 0);
    if (typeof len === 'string') throw new EntryError(k, `${show(this.tokText[k]!)} ${len}`);
    return Buffer.from(this.nameBuf.subarray(0, len));
  }

  /**
   * Writes the wire octets of a presentation name at out[at], which has room for 256 octets;
   * returns their length, or why the text is not a name.
   */
  private nameWire(t: string, origin: Buffer | null, out: Buffer, at: number): number | string {
    if (t === '@') {
      if (origin === null) return 'needs an origin: no $ORIGIN is in effect';
      out.set(origin, at);
      return origin.length;
    }
    if (t === '.') {
      out[at] = 0;
      return 1;
    }
    let lenAt = at;
    let pos = at + 1;
    let absolute = false;
    for (let i = 0; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c === 0x2e) {
        const len = pos - lenAt - 1;
        if (len === 0) return 'has an empty label';
        out[lenAt] = len;
        lenAt = pos++;
        if (i === t.length - 1) absolute = true;
        continue;
      }
      let b = c;
      if (c === 0x5c) {
        const v = escapeAt(t, i);
        if (v === null) return 'has a bad escape: expected \\DDD with DDD at most 255, or \\ before one character';
        b = v.octet;
        i = v.end - 1;
      }
      // Lower case like keyToWire and nsd, so RDATA names compare with owners octet for octet.
      if (b >= 0x41 && b <= 0x5a) b |= 0x20;
      if (pos - lenAt - 1 >= MAX_LABEL) return `has a label over ${MAX_LABEL} octets`;
      if (pos - at >= MAX_NAME_WIRE) return `is over ${MAX_NAME_WIRE} octets on the wire`;
      out[pos++] = b;
    }
    if (!absolute) {
      const len = pos - lenAt - 1;
      out[lenAt] = len;
      if (origin === null) return 'is relative and no $ORIGIN is in effect';
      if (pos - at + origin.length > MAX_NAME_WIRE) return `is over ${MAX_NAME_WIRE} octets on the wire with the origin`;
      out.set(origin, pos);
      return pos - at + origin.length;
    }
    if (lenAt + 1 - at > MAX_NAME_WIRE) return `is over ${MAX_NAME_WIRE} octets on the wire`;
    out[lenAt] = 0;
    return lenAt + 1 - at;
  }
}

/** The escape at t[i] === '\\': its octet and where it ends; null when malformed. */
function escapeAt(t: string, i: number): { octet: number; end: number } | null {
  if (i + 1 >= t.length) return null;
  const d = t.charCodeAt(i + 1);
  if (d >= 0x30 && d <= 0x39) {
    const ds = t.slice(i + 1, i + 4);
    if (!/^\d{3}$/.test(ds)) return null;
    const v = Number(ds);
    return v > 255 ? null : { octet: v, end: i + 4 };
  }
  return { octet: d, end: i + 2 };
}

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Seconds of "3600", "1h30m", "1W" (BIND's units); null when malformed. */
export function parseTtl(t: string): number | null {
  if (/^\d{1,10}$/.test(t)) return Number(t);
  if (!/^(?:\d{1,10}[smhdwSMHDW])+$/.test(t)) return null;
  let total = 0;
  for (const m of t.matchAll(/(\d+)([a-zA-Z])/g)) total += Number(m[1]) * UNIT[m[2]!.toLowerCase()]!;
  return total;
}
