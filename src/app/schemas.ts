// Build step (npm run build): compiles the config schemas into standalone ajv validators, so a
// server starts without ajv's compilation; `--write` also writes schemas/linedns.schema.json.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { AJV_OPTIONS, FILE_SCHEMAS, OPTIONS_AJV_OPTIONS, compiledDir, compiledName, optionsKey, schemaDir } from '../config/schemas.js';
import { BUILTIN_STAGES } from '../stages/index.js';
import { builtinSchema, linednsSchemaText } from './config.js';

function compile(schema: object, key: string, options: typeof AJV_OPTIONS): void {
  const ajv = new Ajv2020.default({ ...options, code: { source: true } });
  writeFileSync(new URL(compiledName(key), compiledDir), standaloneCode.default(ajv, ajv.compile(schema)));
}

mkdirSync(compiledDir, { recursive: true });
for (const name of FILE_SCHEMAS) compile(JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), 'utf8')) as object, name, AJV_OPTIONS);
compile(builtinSchema(), 'linedns', AJV_OPTIONS);
for (const def of BUILTIN_STAGES) if (def.options) compile(def.options.schema, optionsKey(def), OPTIONS_AJV_OPTIONS);
if (process.argv.includes('--write')) writeFileSync(new URL('linedns.schema.json', schemaDir), linednsSchemaText());
