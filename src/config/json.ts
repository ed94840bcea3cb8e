// JSON files with positions: values come from a fast JSON.parse; line:column for a JSON path is
// found by re-reading the text with jsonc-parser only when something must be reported.

import { findNodeAtLocation, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';

export type PathSegment = string | number;

export interface Position {
  line: number;
  column: number;
}

export interface SyntaxProblem extends Position {
  message: string;
}

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

  private constructor(readonly text: string, readonly value: unknown) {}

  /** Parses `text` (comments allowed, as in JSONC); returns the syntax problems instead when any. */
  static parse(text: string): JsonDocument | SyntaxProblem[] {
    try {
      return new JsonDocument(text, JSON.parse(text));
    } catch {
      // Comments, or a real syntax error: let jsonc-parser decide, with positions.
    }
    const errors: ParseError[] = [];
    const tree = parseTree(text, errors, { allowTrailingComma: false, disallowComments: false, allowEmptyContent: false });
    const doc = new JsonDocument(text, undefined);
    if (errors.length > 0 || tree === undefined) {
      if (errors.length === 0) return [{ line: 1, column: 1, message: 'the file is empty' }];
      return errors.map((e) => {
        const code = printParseErrorCode(e.error);
        return { ...doc.position(e.offset), message: FRIENDLY[code] ?? code };
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
