// Diagnostics: every config problem as FILE:LINE:COL, JSON path and message, collected in one
// pass by a Reporter and thrown together as a ConfigError.

import type { JsonDocument, PathSegment } from './json.js';
import { formatPath } from './json.js';
import { severityOf, type ConfigCode, type Severity } from './codes.js';

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** JSON path, `$` for the whole document. */
  path: string;
  message: string;
  severity: Severity;
  /** The kind of problem (src/config/codes.ts, docs/errors.md); the severity follows from it. */
  code: ConfigCode;
}

/** What to log of a configuration that failed to load: each issue as FILE:LINE:COL, or the error. */
export function failureLines(err: unknown): string[] {
  return err instanceof ConfigError ? err.issues.map(formatIssue) : [String(err)];
}

/**
 * FILE:LINE:COL: SEVERITY: PATH: MESSAGE [CODE]. The code goes last, as compilers put a warning's
 * flag, so the familiar prefix stays as it was for the people and the scripts that read it.
 */
export function formatIssue(i: ConfigIssue): string {
  return `${i.file}:${i.line}:${i.column}: ${i.severity}: ${i.path}: ${i.message} [${i.code}]`;
}

/** Orders issues by file (in the order files were read), then line and column. */
export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  const files = [...new Set(issues.map((i) => i.file))];
  return [...issues].sort((a, b) => files.indexOf(a.file) - files.indexOf(b.file) || a.line - b.line || a.column - b.column);
}

export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    super(issues.filter((i) => i.severity === 'error').map(formatIssue).join('\n'));
    this.issues = sortIssues(issues);
    this.name = 'ConfigError';
  }
}

export interface LoadedFile {
  file: string;
  doc: JsonDocument | null;
  value: unknown;
}

export class Reporter {
  readonly issues: ConfigIssue[] = [];

  /** A problem of a file as a whole, or of a flag (FILE is then the flag and the position 0:0). */
  syntax(file: string, line: number, column: number, code: ConfigCode, message: string): void {
    this.issues.push({ file, line, column, path: '$', message, severity: severityOf(code), code });
  }

  /** A problem of the value at `path` of `f` (with `key`, reported at its property name). */
  at(f: LoadedFile, path: readonly PathSegment[], code: ConfigCode, message: string, key = false): void {
    const pos = f.doc ? f.doc.locate(path, key) : { line: 0, column: 0 };
    this.issues.push({ file: f.file, line: pos.line, column: pos.column, path: formatPath(path), message, severity: severityOf(code), code });
  }

  /** True when an error is already reported at this path, so a semantic check need not repeat it. */
  has(f: LoadedFile, path: readonly PathSegment[]): boolean {
    const p = formatPath(path);
    return this.issues.some((i) => i.file === f.file && i.path === p && i.severity === 'error');
  }

  get failed(): boolean {
    return this.issues.some((i) => i.severity === 'error');
  }
}

export function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Closest known word, for "did you mean" on misspelt keys. */
export function suggest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}
