// The rewrite rules of linedns.json (`rewrite`) and of the file `rewriteFrom` names: checked with
// positions (names, `*.` on both sides or neither, one rule per `from`, no chains, labels).

import { checkPresentationName, isSubdomain, normalizeName } from '../lib/dns/name.js';
import type { PathSegment } from './json.js';
import { Reporter, show, type LoadedFile } from './issues.js';
import { readJson } from './validate.js';
import type { SourceDocuments } from './sources.js';
import type { RewriteRule } from './types.js';

/** Where a rule was written, to report a later rule against it. */
interface Source {
  readonly file: LoadedFile;
  /** Path of the rule: ['rewrite', i] or [FROM] in the rewriteFrom file. */
  readonly at: readonly PathSegment[];
  /** Path of its `from` and `to` values. */
  readonly fromAt: readonly PathSegment[];
  readonly fromIsKey: boolean;
  readonly toAt: readonly PathSegment[];
  /** As written, for messages. */
  readonly fromText: string;
  readonly toText: string;
}

interface Checked {
  readonly rule: RewriteRule;
  readonly source: Source;
}

const WHY_ONCE = 'linedns rewrites a question once, so a rule whose result another rule would rewrite again is refused: write the final name in the first rule';

/** "a.b" or "*.a.b" -> [canonical apex, suffix?], or the reason it is no rewrite name. */
function parseSide(text: string): { name: string; suffix: boolean } | string {
  const suffix = text.startsWith('*.');
  const bare = suffix ? text.slice(2) : text;
  const why = checkPresentationName(bare, false);
  if (why !== null) return `${show(text)} ${why}; expected a domain name, or "*." and a domain name for a whole subtree`;
  const name = normalizeName(bare);
  if (name === '.') return `${show(text)} names the root; expected a domain name below it`;
  return { name, suffix };
}

function where(s: Source): string {
  const p = s.file.doc ? s.file.doc.locate(s.at) : { line: 0, column: 0 };
  return `${s.file.file}:${p.line}:${p.column}`;
}

/** Whether some question rewritten by `a` could be rewritten again by `b`. */
function chains(a: RewriteRule, b: RewriteRule): boolean {
  if (!a.suffix) return b.suffix ? isSubdomain(a.to, b.from) : a.to === b.from;
  // a's results are a.to and every name under it.
  return b.suffix ? isSubdomain(a.to, b.from) || isSubdomain(b.from, a.to) : isSubdomain(b.from, a.to);
}

/**
 * Reads `rewrite` (the array in linedns.json, `main`) and the file `rewriteFrom` names (already
 * resolved to `fromPath`), reports every problem, and returns the rules that are sound. `lines`:
 * the lines of smart-line.json (labels naming none are warned about, as records.json's are).
 */
export function loadRewrite(raw: Record<string, unknown>, main: LoadedFile | null, fromPath: string | null, lines: ReadonlySet<string>, report: Reporter, documents?: SourceDocuments): RewriteRule[] {
  const found: Checked[] = [];
  const side = (f: LoadedFile, at: readonly PathSegment[], text: unknown, key = false): { name: string; suffix: boolean } | null => {
    if (typeof text !== 'string') return null; // the schema reported it
    const s = parseSide(text);
    if (typeof s === 'string') {
      report.at(f, at, 'LDNS_REWRITE_NAME', s, key);
      return null;
    }
    return s;
  };
  const add = (source: Source, from: { name: string; suffix: boolean }, to: { name: string; suffix: boolean }, labels: readonly string[] | null): void => {
    if (from.suffix !== to.suffix) {
      const [a, b] = from.suffix ? ['"from"', '"to"'] : ['"to"', '"from"'];
      report.at(source.file, source.at, 'LDNS_REWRITE_FORM', `${a} ${show(from.suffix ? source.fromText : source.toText)} is a subtree ("*.") and ${b} ${show(from.suffix ? source.toText : source.fromText)} one name; expected "*." on both sides (a subtree onto a subtree) or on neither`);
      return;
    }
    found.push({ rule: { from: from.name, to: to.name, suffix: from.suffix, labels }, source });
  };

  const list = main && Array.isArray(raw.rewrite) ? (raw.rewrite as unknown[]) : [];
  list.forEach((item, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return;
    const e = item as Record<string, unknown>;
    const f = main!;
    const from = side(f, ['rewrite', i, 'from'], e.from);
    const to = side(f, ['rewrite', i, 'to'], e.to);
    let labels: string[] | null = null;
    if (Array.isArray(e.labels)) {
      labels = e.labels.filter((l): l is string => typeof l === 'string');
      labels.forEach((l, j) => {
        if (!lines.has(l)) report.at(f, ['rewrite', i, 'labels', j], 'LDNS_REWRITE_UNKNOWN_LABEL', `label "${l}" is not a line in smart-line.json: no client will have this rule applied`);
      });
      if (labels.length === 0) labels = null;
    }
    if (from === null || to === null) return;
    const source: Source = { file: f, at: ['rewrite', i], fromAt: ['rewrite', i, 'from'], fromIsKey: false, toAt: ['rewrite', i, 'to'], fromText: e.from as string, toText: e.to as string };
    add(source, from, to, labels);
  });

  if (fromPath !== null) {
    const f = readJson(fromPath, report, undefined, documents);
    if (f !== null) {
      if (typeof f.value !== 'object' || f.value === null || Array.isArray(f.value)) {
        report.at(f, [], 'LDNS_REWRITE_FORM', 'expected an object of exact names, {"FROM": "TO", ...}');
      } else {
        for (const [key, value] of Object.entries(f.value as Record<string, unknown>)) {
          if (typeof value !== 'string') {
            report.at(f, [key], 'LDNS_REWRITE_NAME', `${show(value)} is not a name; expected {"FROM": "TO", ...} with string values`);
            continue;
          }
          const from = side(f, [key], key, true);
          const to = side(f, [key], value);
          if (from === null || to === null) continue;
          if (from.suffix || to.suffix) {
            report.at(f, [key], 'LDNS_REWRITE_FORM', `${show(from.suffix ? key : value)}: the rewriteFrom file holds exact names only; expected subtree rules ("*.") in "rewrite" of linedns.json`, from.suffix);
            continue;
          }
          add({ file: f, at: [key], fromAt: [key], fromIsKey: true, toAt: [key], fromText: key, toText: value }, from, to, null);
        }
      }
    }
  }

  // One rule per `from` (of each kind: "a.b" and "*.a.b" may both be written, the exact one wins).
  const byFrom = new Map<string, Checked>();
  const unique: Checked[] = [];
  for (const c of found) {
    const key = `${c.rule.suffix ? '*' : '='}${c.rule.from}`;
    const first = byFrom.get(key);
    if (first !== undefined) {
      report.at(c.source.file, c.source.fromAt, 'LDNS_REWRITE_DUPLICATE', `${show(c.source.fromText)} is already rewritten by the rule at ${where(first.source)}; expected one rule per "from"`, c.source.fromIsKey);
      continue;
    }
    byFrom.set(key, c);
    unique.push(c);
  }

  // Chains: the exact froms by name, the suffix rules in a list (few: a generated table is exact),
  // so a table of thousands of exact rules is checked in linear time.
  const suffixRules = unique.filter((c) => c.rule.suffix);
  const exactByFrom = new Map(unique.filter((c) => !c.rule.suffix).map((c) => [c.rule.from, c]));
  const rules: RewriteRule[] = [];
  for (const a of unique) {
    let other: Checked | undefined;
    if (!a.rule.suffix) other = exactByFrom.get(a.rule.to);
    else for (const [from, c] of exactByFrom) if (isSubdomain(from, a.rule.to)) other = c;
    if (other === undefined) other = suffixRules.find((b) => chains(a.rule, b.rule));
    if (other !== undefined) {
      const self = other === a;
      report.at(
        a.source.file,
        a.source.toAt,
        'LDNS_REWRITE_CHAIN',
        self
          ? `${show(a.source.toText)} is or lies under ${show(a.source.fromText)}, so this rule would rewrite its own results; ${WHY_ONCE}`
          : `${show(a.source.toText)} is rewritten again by the rule at ${where(other.source)} (${show(other.source.fromText)} -> ${show(other.source.toText)}); ${WHY_ONCE}`,
      );
      continue;
    }
    rules.push(a.rule);
  }
  return rules;
}
