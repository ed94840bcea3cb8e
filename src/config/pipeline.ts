// The pipeline of linedns.json: entries ("cache" or {"cache": {...}}), each stage's options
// (top-level keys, then the entry's, then the schema's defaults), and the stages' requirements.

import { existsSync } from 'node:fs';
import { checkRequirements } from '../core/declarations.js';
import type { StageDefinition } from '../core/stage.js';
import type { PathSegment } from './json.js';
import { Reporter, show, suggest, type LoadedFile } from './issues.js';
import type { ConfigCode } from './codes.js';
import { describeError, valueAt } from './validate.js';
import { optionsValidator } from './schemas.js';
import { isModulePath } from './pipeline-names.js';
import type { PipelineEntry, PipelineFacts } from './types.js';

/** The stages a config may name: the built-in definitions, by name (the caller's registry). */
export type StageCatalog = ReadonlyMap<string, StageDefinition>;

/** The users' shape: the line-aware cache answers repeats first, then local data, then its filter. */
export const DEFAULT_PIPELINE: readonly string[] = ['decode', 'acl', 'ratelimit', 'cache', 'rewrite', 'records', 'zones', 'smartline', 'forward'];


interface Source {
  /** Option name -> where its value was written, for errors about it. */
  readonly origin: Map<string, PathSegment[]>;
  /** Where the options as a whole come from (the entry, or the first top-level key). */
  readonly at: PathSegment[];
}

/**
 * The options of one built-in stage: top-level keys first (the older form), then the entry's
 * own, validated with the schema's defaults filled in; null for a stage off without options.
 */
function stageOptions(
  def: StageDefinition,
  raw: Record<string, unknown>,
  entry: Record<string, unknown> | null,
  entryAt: PathSegment[],
  main: LoadedFile | null,
  report: Reporter,
): unknown {
  const spec = def.options;
  if (spec === undefined) return undefined;
  const merged: Record<string, unknown> = {};
  const source: Source = { origin: new Map(), at: entryAt };
  let given = false;
  for (const [key, option] of Object.entries(spec.topLevel ?? {})) {
    const value = raw[key];
    if (value === undefined) continue;
    given = true;
    if (option === '.') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) continue;
      for (const [k, v] of Object.entries(value)) {
        merged[k] = v;
        source.origin.set(k, [key, k]);
      }
    } else {
      merged[option] = value;
      source.origin.set(option, [key]);
    }
  }
  if (entry !== null) {
    given = true;
    for (const [k, v] of Object.entries(entry)) {
      merged[k] = v;
      source.origin.set(k, [...entryAt, k]);
    }
  }
  if (!given && spec.offWhenAbsent === true) return null;
  const where = (path: readonly (string | number)[]): PathSegment[] => {
    const first = path[0];
    const base = typeof first === 'string' ? source.origin.get(first) : undefined;
    return base ? [...base, ...path.slice(1)] : source.at;
  };
  const at = (path: readonly (string | number)[], code: ConfigCode, message: string): void => {
    const p = where(path);
    // The document's schema already said what is wrong here (and where): once is enough.
    if (main !== null && !report.has(main, p)) report.at(main, p, code, message);
    else if (main === null) report.syntax('(defaults)', 0, 0, code, `${def.name}: ${message}`);
  };
  const validate = optionsValidator(def);
  if (!validate(merged)) {
    // The document's schema checked every value where it was written, against the same schema;
    // only `required` waits for the merge (a key may come from the top level or the entry).
    for (const e of validate.errors ?? []) {
      if (e.keyword !== 'required') continue;
      const path = e.instancePath.split('/').slice(1).map((s) => (/^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, '/').replace(/~0/g, '~')));
      const d = describeError(e, valueAt(merged, path), () => spec.schema);
      if (d !== null) at(path, d.code, d.message);
    }
    return merged;
  }
  spec.check?.(merged as NonNullable<unknown>, at);
  return merged;
}

/** Top-level keys no stage of the pipeline reads: set, they do nothing, which is easy to miss. */
function unusedKeys(catalog: StageCatalog, used: ReadonlySet<string>, raw: Record<string, unknown>, main: LoadedFile, report: Reporter): void {
  for (const def of catalog.values()) {
    if (used.has(def.name)) continue;
    const keys = [...Object.keys(def.options?.topLevel ?? {}), ...(def.dataKeys ?? [])];
    for (const key of keys) {
      if (raw[key] === undefined) continue;
      report.at(main, [key], 'LDNS_UNUSED_KEY', `"${key}" is set but the "${def.name}" stage is not in the pipeline, so it has no effect; expected "${def.name}" in "pipeline", or no "${key}"`, true);
    }
  }
}

/**
 * Reads `pipeline` (or the default) into entries with their options, then checks the stages'
 * requirements against one another. `resolvePath` makes a module path absolute.
 */
export function loadPipeline(
  catalog: StageCatalog,
  raw: Record<string, unknown>,
  main: LoadedFile | null,
  report: Reporter,
  resolvePath: (p: string) => string,
  facts: PipelineFacts,
): PipelineEntry[] {
  const list: unknown[] = Array.isArray(raw.pipeline) ? raw.pipeline : [...DEFAULT_PIPELINE];
  const entries: PipelineEntry[] = [];
  /** For the requirement check: each entry's definition (null for a module) and position. */
  const checked: { def: StageDefinition | null; options: unknown; at: PathSegment[] }[] = [];
  const names = [...catalog.keys()];
  list.forEach((item, i) => {
    let name: string;
    let options: Record<string, unknown> | null = null;
    let at: PathSegment[] = ['pipeline', i];
    if (typeof item === 'string') name = item;
    else if (typeof item === 'object' && item !== null && !Array.isArray(item) && Object.keys(item).length === 1) {
      name = Object.keys(item)[0]!;
      const value = (item as Record<string, unknown>)[name];
      // Not an object: the schema reported it.
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
      options = value as Record<string, unknown>;
      at = ['pipeline', i, name];
    } else return; // the schema reported it
    if (isModulePath(name)) {
      const abs = resolvePath(name);
      if (!existsSync(abs) && main) report.at(main, ['pipeline', i], 'LDNS_STAGE_MODULE_MISSING', `${show(name)}: no such file (${abs}); expected a built-in stage or the path of a stage module`);
      entries.push({ stage: abs, options: options ?? undefined });
      checked.push({ def: null, options, at: ['pipeline', i] });
      return;
    }
    const def = catalog.get(name);
    if (def === undefined) {
      // An object entry's unknown key was reported by the schema, with the same hint.
      if (main && typeof item === 'string') {
        const hint = suggest(name, names);
        report.at(main, ['pipeline', i], 'LDNS_UNKNOWN_STAGE', `unknown stage ${show(name)}${hint ? ` (did you mean "${hint}"?)` : ''}; expected one of ${names.map((n) => `"${n}"`).join(', ')} or a path such as "./stages/mine.js"`);
      }
      return;
    }
    const resolved = stageOptions(def, raw, options, at, main, report);
    entries.push({ stage: name, options: resolved });
    checked.push({ def, options: resolved, at: ['pipeline', i] });
  });
  for (const problem of checkRequirements(checked, facts, [...catalog.values()])) {
    if (main) report.at(main, checked[problem.index]!.at, 'LDNS_REQUIREMENT', problem.message);
    else report.syntax('(default pipeline)', 0, 0, 'LDNS_REQUIREMENT', problem.message);
  }
  if (main) {
    const used = new Set(entries.map((e) => e.stage));
    unusedKeys(catalog, used, raw, main, report);
    // Options of a stage left out are checked all the same: one run lists every error of the file.
    for (const def of catalog.values()) {
      const keys = Object.keys(def.options?.topLevel ?? {});
      if (!used.has(def.name) && keys.some((k) => raw[k] !== undefined)) stageOptions(def, raw, null, [keys.find((k) => raw[k] !== undefined)!], main, report);
    }
  }
  return entries;
}
