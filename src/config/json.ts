// JSON files with positions: values come from a fast JSON.parse; line:column for a JSON path is
// found by re-reading the text with jsonc-parser only when something must be reported.

import { isUtf8 } from 'node:buffer';
import { findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import type { ConfigCode } from './codes.js';

export type PathSegment = string | number;

export interface Position {
  line: number;
  column: number;
}

export interface SyntaxProblem extends Position {
  message: string;
  /** Which of the ways a file fails to be read as JSON this is. */
  code: Extract<ConfigCode, 'LDNS_JSON_SYNTAX' | 'LDNS_JSON_ENCODING' | 'LDNS_JSON_DEPTH'>;
}

/** A key seen twice in one object: JSON.parse would silently keep only the last value. */
export interface DuplicateKey extends Position {
  path: PathSegment[];
  first: Position;
}

/**
 * Deeper nesting than any linedns file needs. The parsers and validators recurse, so a hostile
 * file of 100,000 `[` would otherwise overflow the stack (RangeError) instead of being reported.
 */
export const MAX_DEPTH = 64;

const FRIENDLY: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'malformed number',
  PropertyNameExpected: 'expected a property name in double quotes',
  ValueExpected: 'expected a value',
  ColonExpected: "expected ':'",
  CommaExpected: "expected ','",
  CloseBraceExpected: "expected '}'",
  CloseBracketExpected: "expected ']'",
  EndOfFileExpected: 'expected the end of the file',
  InvalidCommentToken: 'malformed comment',
  UnexpectedEndOfComment: 'unterminated comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'malformed \\u escape',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character in string',
};

export class JsonDocument {
  private tree: Node | undefined;
  private lineStarts: number[] | undefined;

  duplicates: DuplicateKey[] = [];

  private constructor(readonly text: string, readonly value: unknown) {}

  /** Decodes a file's bytes as UTF-8 (a leading BOM is accepted and dropped), then parses it. */
  static fromBytes(bytes: Buffer): JsonDocument | SyntaxProblem[] {
    if (!isUtf8(bytes)) return [utf8Problem(bytes)];
    return JsonDocument.parse(bytes.toString('utf8'));
  }

  /** Parses `text` (comments allowed, as in JSONC); returns the syntax problems instead when any. */
  static parse(input: string): JsonDocument | SyntaxProblem[] {
    // Editors on Windows save a BOM; it is not part of the JSON, and columns are counted without it.
    const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
    const scan = scanStructure(text);
    if (scan.tooDeepAt !== null) {
      const probe = new JsonDocument(text, undefined);
      return [{ ...probe.position(scan.tooDeepAt), message: `nested deeper than ${MAX_DEPTH} levels; expected at most ${MAX_DEPTH} levels of [ and {`, code: 'LDNS_JSON_DEPTH' }];
    }
    const doc = JsonDocument.parseShallow(text);
    if (!Array.isArray(doc)) {
      doc.duplicates = scan.duplicates.map((d) => ({ ...doc.position(d.offset), path: d.path, first: doc.position(d.firstOffset) }));
    }
    return doc;
  }

  private static parseShallow(text: string): JsonDocument | SyntaxProblem[] {
    try {
      return new JsonDocument(text, JSON.parse(text));
    } catch {
      // Comments, or a real syntax error: let jsonc-parser decide, with positions.
    }
    const errors: ParseError[] = [];
    const tree = parseTree(text, errors, { allowTrailingComma: false, disallowComments: false, allowEmptyContent: false });
    const doc = new JsonDocument(text, undefined);
    if (errors.length > 0 || tree === undefined) {
      if (errors.length === 0) return [{ line: 1, column: 1, message: 'the file is empty', code: 'LDNS_JSON_SYNTAX' }];
      return errors.map((e) => {
        const code = printParseErrorCode(e.error);
        return { ...doc.position(e.offset), message: FRIENDLY[code] ?? code, code: 'LDNS_JSON_SYNTAX' };
      });
    }
    const withValue = new JsonDocument(text, nodeValue(tree));
    withValue.tree = tree;
    return withValue;
  }

  position(offset: number): Position {
    if (this.lineStarts === undefined) {
      this.lineStarts = [0];
      for (let i = 0; i < this.text.length; i++) if (this.text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
    }
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - this.lineStarts[lo]! + 1 };
  }

  /** Where the value at `path` starts; with `key`, where its property name starts. */
  locate(path: readonly PathSegment[], key = false): Position {
    if (this.tree === undefined) {
      const errors: ParseError[] = [];
      this.tree = parseTree(this.text, errors, { disallowComments: false });
    }
    for (let n = path.length; n >= 0; n--) {
      const node = this.tree ? findNodeAtLocation(this.tree, path.slice(0, n) as PathSegment[]) : undefined;
      if (node === undefined) continue;
      const at = key && n === path.length && node.parent?.type === 'property' ? node.parent : node;
      return this.position(at.offset);
    }
    return { line: 1, column: 1 };
  }
}

type Frame = { kind: 'object'; keys: Map<string, number>; key: string | null; expectKey: boolean } | { kind: 'array'; index: number };

/**
 * One pass over the text outside strings and comments, cheap next to the parse itself: finds
 * nesting past MAX_DEPTH before any recursive parser sees it, and keys repeated in one object.
 */
function scanStructure(text: string): { tooDeepAt: number | null; duplicates: Array<{ path: PathSegment[]; offset: number; firstOffset: number }> } {
  const stack: Frame[] = [];
  const duplicates: Array<{ path: PathSegment[]; offset: number; firstOffset: number }> = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          escaped = true;
          j++;
        } else if (d === 0x22) break;
      }
      const top = stack[stack.length - 1];
      if (top?.kind === 'object' && top.expectKey) {
        const raw = text.slice(i + 1, j);
        let key = raw;
        if (escaped) {
          try {
            key = JSON.parse(`"${raw}"`) as string;
          } catch {
            // A malformed string: the parser reports it.
          }
        }
        const first = top.keys.get(key);
        if (first === undefined) top.keys.set(key, i);
        else duplicates.push({ path: [...stack.slice(0, -1).map((f) => (f.kind === 'object' ? f.key ?? '' : f.index)), key], offset: i, firstOffset: first });
        top.key = key;
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x2f /* / */ && text.charCodeAt(i + 1) === 0x2f) {
      const end = text.indexOf('\n', i);
      i = end < 0 ? n : end;
    } else if (c === 0x2f && text.charCodeAt(i + 1) === 0x2a /* * */) {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 1;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_DEPTH) return { tooDeepAt: i, duplicates };
      stack.push(c === 0x7b ? { kind: 'object', keys: new Map(), key: null, expectKey: true } : { kind: 'array', index: 0 });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.kind === 'object') top.expectKey = true;
      else if (top) top.index++;
    }
  }
  return { tooDeepAt: null, duplicates };
}

/** Names the first byte that is not UTF-8, with its line and column (in characters before it). */
function utf8Problem(bytes: Buffer): SyntaxProblem {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    return { line: 1, column: 1, message: 'the file is UTF-16 (it starts with a UTF-16 byte-order mark); expected UTF-8', code: 'LDNS_JSON_ENCODING' };
  }
  const at = firstInvalidUtf8(bytes);
  const lineStart = bytes.lastIndexOf(0x0a, at - 1) + 1;
  let line = 1;
  for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
  const column = bytes.subarray(lineStart, at).toString('utf8').length + 1;
  return { line, column, message: `invalid UTF-8: byte 0x${bytes[at]!.toString(16).padStart(2, '0')} at offset ${at} is not part of a valid UTF-8 sequence; expected the file in UTF-8`, code: 'LDNS_JSON_ENCODING' };
}

function firstInvalidUtf8(b: Buffer): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let extra: number;
    if (c >= 0xc2 && c <= 0xdf) extra = 1;
    else if (c >= 0xe0 && c <= 0xef) extra = 2;
    else if (c >= 0xf0 && c <= 0xf4) extra = 3;
    else return i;
    // RFC 3629: these lead bytes narrow the second byte's range (no overlongs, surrogates, > U+10FFFF).
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    const second = b[i + 1];
    if (second === undefined || second < lo || second > hi) return i;
    for (let k = 2; k <= extra; k++) if (((b[i + k] ?? 0) & 0xc0) !== 0x80) return i;
    i += extra + 1;
  }
  return b.length;
}

function nodeValue(node: Node): unknown {
  switch (node.type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const prop of node.children ?? []) {
        const [k, v] = prop.children ?? [];
        if (k && v) out[k.value as string] = nodeValue(v);
      }
      return out;
    }
    case 'array':
      return (node.children ?? []).map(nodeValue);
    default:
      return node.value;
  }
}

/** `$[3].rdata`-style rendering of a JSON path. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '$';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** Splits an ajv instancePath ("/3/rdata") into segments, numbers where the data is an array. */
export function pointerToPath(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const out: PathSegment[] = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(seg);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}
