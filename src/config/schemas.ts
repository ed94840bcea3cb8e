// Validators for the three config files, from schemas/*.schema.json (draft 2020-12): the
// standalone code made at build time when present, else compiled with ajv on first use.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type Ajv2020 from 'ajv/dist/2020.js';
import type { ErrorObject, Options, ValidateFunction } from 'ajv';

export const SCHEMA_NAMES = ['linedns', 'records', 'smart-line'] as const;
export type SchemaName = (typeof SCHEMA_NAMES)[number];

export const schemaDir = new URL('../../../schemas/', import.meta.url);
export const compiledDir = new URL('../../schemas/', import.meta.url);
export const AJV_OPTIONS: Options = { allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true };

const require = createRequire(import.meta.url);
const validators = new Map<SchemaName, ValidateFunction>();
const schemas = new Map<SchemaName, object>();

export function schemaJson(name: SchemaName): object {
  let s = schemas.get(name);
  if (s === undefined) {
    s = JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), 'utf8')) as object;
    schemas.set(name, s);
  }
  return s;
}

export function schemaFor(name: SchemaName): ValidateFunction {
  let v = validators.get(name);
  if (v === undefined) {
    const compiled = new URL(`${name}.cjs`, compiledDir);
    if (existsSync(compiled)) {
      v = require(compiled.pathname) as ValidateFunction;
    } else {
      // Only without a build (tests of src, say): loading ajv itself costs start-up time.
      const ajv = require('ajv/dist/2020.js') as typeof Ajv2020;
      v = new ajv.default(AJV_OPTIONS).compile(schemaJson(name));
    }
    validators.set(name, v);
  }
  return v;
}

/** The schema node an error's schemaPath ("#/properties/cache/additionalProperties") points into. */
export function schemaAt(name: SchemaName, schemaPath: string): Record<string, unknown> | undefined {
  let cur: unknown = schemaJson(name);
  const parts = schemaPath.replace(/^#\/?/, '').split('/').filter((p) => p.length > 0);
  for (const p of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>) : undefined;
}

export type { ErrorObject };
