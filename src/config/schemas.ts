// Validators for the config files: records.json and smart-line.json from schemas/*.schema.json,
// linedns.json from a schema composed of its own keys and every stage's options (schema.ts).
// Each is the standalone code made at build time when present, else compiled with ajv on first use.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type Ajv2020 from 'ajv/dist/2020.js';
import type { ErrorObject, Options, ValidateFunction } from 'ajv';
import type { StageDefinition } from '../core/stage.js';

/** Schemas kept as files in schemas/ (the data formats, Pipy-compatible). */
export const FILE_SCHEMAS = ['records', 'smart-line', 'tests'] as const;
export type FileSchemaName = (typeof FILE_SCHEMAS)[number];

export const schemaDir = new URL('../../../schemas/', import.meta.url);
export const compiledDir = new URL('../../schemas/', import.meta.url);
export const AJV_OPTIONS: Options = { allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true };
/** Stage options are validated with their defaults filled in: the schema is the one place they live. */
export const OPTIONS_AJV_OPTIONS: Options = { ...AJV_OPTIONS, useDefaults: true };

const require = createRequire(import.meta.url);
const fileSchemas = new Map<FileSchemaName, object>();
const compiled = new Map<string, ValidateFunction>();

export function fileSchema(name: FileSchemaName): object {
  let s = fileSchemas.get(name);
  if (s === undefined) {
    s = JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), 'utf8')) as object;
    fileSchemas.set(name, s);
  }
  return s;
}

/** The file name (under dist/schemas/) of a precompiled validator. */
export function compiledName(key: string): string {
  return `${key}.cjs`;
}

/**
 * The validator `key` names: precompiled at build time when there, else compiled now from
 * `schema()` (only without a build, as in tests of src: loading ajv costs start-up time).
 */
export function validatorFor(key: string, schema: () => object, options: Options = AJV_OPTIONS): ValidateFunction {
  let v = compiled.get(key);
  if (v === undefined) {
    const file = new URL(compiledName(key), compiledDir);
    if (existsSync(file)) v = require(file.pathname) as ValidateFunction;
    else {
      const ajv = require('ajv/dist/2020.js') as typeof Ajv2020;
      v = new ajv.default(options).compile(schema());
    }
    compiled.set(key, v);
  }
  return v;
}

export function fileValidator(name: FileSchemaName): ValidateFunction {
  return validatorFor(name, () => fileSchema(name));
}

/** The key of a stage's options validator (with defaults). */
export function optionsKey(def: StageDefinition): string {
  return `stage-${def.name}`;
}

export function optionsValidator(def: StageDefinition): ValidateFunction {
  return validatorFor(optionsKey(def), () => def.options!.schema, OPTIONS_AJV_OPTIONS);
}

/** The schema node an error's schemaPath ("#/properties/cache/additionalProperties") points into. */
export function schemaAt(root: object, schemaPath: string): Record<string, unknown> | undefined {
  let cur: unknown = root;
  const parts = schemaPath.replace(/^#\/?/, '').split('/').filter((p) => p.length > 0);
  for (const p of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>) : undefined;
}

export type { ErrorObject, ValidateFunction };
