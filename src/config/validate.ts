// Reading a config file into a JSON document with positions, and validating it against its
// JSON Schema: ajv's errors reworded for a person, each at the line and column of its value.

import { readFileSync } from 'node:fs';
import { JsonDocument, formatPath, pointerToPath, type PathSegment } from './json.js';
import { schemaAt, type ErrorObject, type ValidateFunction } from './schemas.js';
import { Reporter, show, suggest, type LoadedFile } from './issues.js';
import { severityOf, type ConfigCode } from './codes.js';
import { isSourceUrl, sourceBytes, type SourceDocuments } from './sources.js';

export function valueAt(root: unknown, path: readonly PathSegment[]): unknown {
  let cur = root;
  for (const seg of path) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[seg] : undefined;
  return cur;
}

/** A schema to validate a document with, and the schema itself for wording its errors. */
export interface SchemaCheck {
  readonly validate: ValidateFunction;
  readonly schema: () => object;
}

/**
 * The JSON Schema keywords describeError words with a code of their own, and those that never
 * fail on their own (annotations, and applicators whose subschemas' errors are reported instead).
 * test/errors.test.ts checks that linedns's schemas use no other, so none reaches the fallback.
 */
export const WORDED_KEYWORDS: readonly string[] = [
  'type', 'required', 'additionalProperties', 'enum', 'const', 'pattern', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
  'minItems', 'minLength', 'minProperties', 'maxProperties', 'oneOf', 'anyOf', 'allOf', 'if', 'then', 'else', 'propertyNames',
  '$schema', '$id', '$ref', '$defs', 'title', 'description', 'default', 'properties', 'patternProperties', 'items',
];

/**
 * Words an ajv error for a person; null for errors that only echo a more precise one. `schema`
 * gives the root schema the error's schemaPath points into (for "expected one of" lists).
 */
export function describeError(e: ErrorObject, value: unknown, schema: () => object): { code: ConfigCode; message: string; key: boolean; extra?: PathSegment } | null {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'if':
    case 'allOf':
    // "property name must be valid": the error of the name itself says what is wrong with it.
    case 'propertyNames':
      return null;
    case 'type':
      return { code: 'LDNS_SCHEMA_TYPE', message: `${show(value)} is not ${article(String(p.type))}`, key: false };
    case 'required':
      return { code: 'LDNS_SCHEMA_REQUIRED', message: `missing required property "${String(p.missingProperty)}"`, key: false };
    case 'additionalProperties': {
      const name = String(p.additionalProperty);
      const props = Object.keys((schemaAt(schema(), e.schemaPath)?.properties as object | undefined) ?? {});
      const hint = suggest(name, props);
      return { code: 'LDNS_SCHEMA_UNKNOWN_PROPERTY', message: `unknown property "${name}"${hint ? ` (did you mean "${hint}"?)` : ''}; expected one of ${props.map((k) => `"${k}"`).join(', ')}`, key: true, extra: name };
    }
    case 'enum':
      return { code: 'LDNS_SCHEMA_ENUM', message: `${show(value)} is not one of ${(p.allowedValues as unknown[]).map(show).join(', ')}`, key: false };
    case 'const':
      return { code: 'LDNS_SCHEMA_ENUM', message: `${show(value)} is not ${show(p.allowedValue)}`, key: false };
    case 'pattern':
      return { code: 'LDNS_SCHEMA_PATTERN', message: `${show(value)} does not match the expected form ${patternHint(e.instancePath)}`, key: false };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { code: 'LDNS_SCHEMA_RANGE', message: `${show(value)} is out of range (expected ${String(p.comparison)} ${String(p.limit)})`, key: false };
    case 'minItems':
      return { code: 'LDNS_SCHEMA_SIZE', message: `expected at least ${String(p.limit)} item(s)`, key: false };
    case 'minLength':
      return { code: 'LDNS_SCHEMA_SIZE', message: `expected a non-empty string`, key: false };
    case 'minProperties':
    case 'maxProperties':
      return { code: 'LDNS_SCHEMA_SIZE', message: `expected ${e.keyword === 'minProperties' ? 'at least' : 'at most'} ${String(p.limit)} propert${p.limit === 1 ? 'y' : 'ies'}`, key: false };
    // pruneAlternatives has turned most of these into "is not X or Y": a value of the wrong shape.
    case 'oneOf':
    case 'anyOf':
      return { code: 'LDNS_SCHEMA_TYPE', message: `${show(value)} matches none of the accepted forms`, key: false };
    // Unreachable while WORDED_KEYWORDS covers the schemas (tested); a new keyword needs its case.
    default:
      return { code: 'LDNS_SCHEMA_TYPE', message: `${show(value)}: ${e.message ?? e.keyword}`, key: false };
  }
}

function article(type: string): string {
  const words = type.split(',').map((t) => (t === 'integer' ? 'an integer' : t === 'array' ? 'an array' : t === 'object' ? 'an object' : `a ${t}`));
  return words.join(' or ');
}

function patternHint(pointer: string): string {
  if (pointer.startsWith('/listen')) return 'HOST:PORT, with IPv6 written [ADDR]:PORT (e.g. "127.0.0.1:5300", "[::1]:5300")';
  if (pointer.endsWith('/tag')) return 'of 1-15 letters and digits (e.g. "issue")';
  return '';
}

/**
 * Reads `path` as a JSON document. `namedAt` is the value of linedns.json that names the file: a
 * file that cannot be read is reported there, where the fix usually is, rather than at 0:0 of a
 * file that may not exist.
 */
export function readJson(path: string, report: Reporter, namedAt?: { f: LoadedFile; path: readonly PathSegment[] }, documents?: SourceDocuments): LoadedFile | null {
  let bytes: Buffer;
  if (isSourceUrl(path)) {
    // Fetched beforehand (src/app/sources.ts); positions in it are reported as URL:line:col.
    const got = sourceBytes(path, documents);
    if (typeof got === 'string') {
      if (namedAt) report.at(namedAt.f, namedAt.path, 'LDNS_FILE_UNREADABLE', `cannot read ${path}: ${got}`);
      else report.syntax(path, 0, 0, 'LDNS_FILE_UNREADABLE', `cannot read the URL: ${got}`);
      return null;
    }
    bytes = got;
  } else try {
    bytes = readFileSync(path);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    if (namedAt) report.at(namedAt.f, namedAt.path, 'LDNS_FILE_UNREADABLE', `cannot read ${path}: ${why}`);
    else report.syntax(path, 0, 0, 'LDNS_FILE_UNREADABLE', `cannot read the file: ${why}`);
    return null;
  }
  const doc = JsonDocument.fromBytes(bytes);
  if (Array.isArray(doc)) {
    for (const p of doc) report.syntax(path, p.line, p.column, p.code, `invalid JSON: ${p.message}`);
    return null;
  }
  const f = { file: path, doc, value: doc.value };
  for (const d of doc.duplicates) {
    report.issues.push({
      file: path,
      line: d.line,
      column: d.column,
      path: formatPath(d.path),
      message: `duplicate key "${String(d.path[d.path.length - 1])}" (first at ${d.first.line}:${d.first.column}); expected each key once per object, as only the last one would count`,
      severity: severityOf('LDNS_DUPLICATE_KEY'),
      code: 'LDNS_DUPLICATE_KEY',
    });
  }
  return f;
}

export function validateSchema(f: LoadedFile, check: SchemaCheck, report: Reporter): boolean {
  const validate = check.validate;
  if (validate(f.value)) return true;
  const errors = pruneAlternatives(validate.errors ?? []);
  // When a more specific error sits under the path of a oneOf/anyOf, report only that one.
  const paths = errors.filter((e) => e.keyword !== 'oneOf' && e.keyword !== 'anyOf').map((e) => e.instancePath);
  const seen = new Set<string>();
  for (const e of errors) {
    if ((e.keyword === 'oneOf' || e.keyword === 'anyOf') && paths.some((p) => p.startsWith(e.instancePath + '/'))) continue;
    const path = pointerToPath(e.instancePath, f.value);
    // An error of a property name (propertyNames) is about the key, not the object holding it:
    // reported at the key and naming it, rather than at the object's opening brace.
    const name = e.propertyName;
    const d = describeError(e, name !== undefined ? name : valueAt(f.value, path), check.schema);
    if (d === null) continue;
    if (name !== undefined) {
      d.message = `property name ${show(name)}: ${d.message}`;
      d.extra = name;
      d.key = true;
    }
    const full = d.extra !== undefined ? [...path, d.extra] : path;
    const id = `${formatPath(full)}|${d.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    report.at(f, full, d.code, d.message, d.key);
  }
  return false;
}

/**
 * A value that fails a oneOf/anyOf gets an error from every branch, most of them beside the
 * point ("{...} is not a string" for an object missing a key). Keeps the errors of the branches
 * whose type the value has; when it has none of their types, one "is not X or Y" instead.
 */
function pruneAlternatives(errors: readonly ErrorObject[]): ErrorObject[] {
  const drop = new Set<ErrorObject>();
  const add: ErrorObject[] = [];
  for (const alt of errors) {
    if ((alt.keyword !== 'oneOf' && alt.keyword !== 'anyOf') || (alt.params as { passingSchemas?: unknown }).passingSchemas) continue;
    const prefix = `${alt.schemaPath}/`;
    const branchOf = (e: ErrorObject): string | null =>
      e !== alt && e.schemaPath.startsWith(prefix) && (e.instancePath === alt.instancePath || e.instancePath.startsWith(`${alt.instancePath}/`)) ? e.schemaPath.slice(prefix.length).split('/')[0]! : null;
    const branches = new Map<string, ErrorObject[]>();
    for (const e of errors) {
      const b = branchOf(e);
      if (b !== null) branches.set(b, [...(branches.get(b) ?? []), e]);
    }
    const wrongType = (b: string): ErrorObject | undefined =>
      branches.get(b)!.find((e) => e.keyword === 'type' && e.instancePath === alt.instancePath && e.schemaPath === `${prefix}${b}/type`);
    const fitting = [...branches.keys()].filter((b) => wrongType(b) === undefined);
    if (branches.size === 0) continue;
    for (const [b, list] of branches) if (!fitting.includes(b)) list.forEach((e) => drop.add(e));
    drop.add(alt);
    // Errors below the value from a schema the branch reached through $ref carry that schema's
    // path, not the branch's: they show the value fits a branch after all (its type is right).
    const deeper = errors.some((e) => branchOf(e) === null && e.instancePath.startsWith(`${alt.instancePath}/`));
    if (fitting.length === 0 && !deeper) {
      const types = [...branches.keys()].map((b) => String((wrongType(b)!.params as { type: unknown }).type));
      add.push({ ...alt, keyword: 'type', params: { type: types.join(',') } });
    }
  }
  return [...errors.filter((e) => !drop.has(e)), ...add];
}
