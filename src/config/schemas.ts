// Compiled JSON Schemas (schemas/*.schema.json, draft 2020-12) for the three config files.
// Compiled once per process; ajv reports every error, and config/load.ts words them for people.

import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv';

export type SchemaName = 'linedns' | 'records' | 'smart-line';

const schemaDir = new URL('../../../schemas/', import.meta.url);
const compiled = new Map<SchemaName, ValidateFunction>();
let ajv: InstanceType<typeof Ajv2020.default> | undefined;

export function schemaFor(name: SchemaName): ValidateFunction {
  let v = compiled.get(name);
  if (v === undefined) {
    ajv ??= new Ajv2020.default({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true });
    const schema = JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), 'utf8')) as object;
    v = ajv.compile(schema);
    compiled.set(name, v);
  }
  return v;
}

export type { ErrorObject };
