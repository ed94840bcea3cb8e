// Build step (npm run build): compiles schemas/*.schema.json into standalone ajv validators,
// so a server starts without paying ajv's schema compilation (hundreds of ms) on every start.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { AJV_OPTIONS, SCHEMA_NAMES, compiledDir, schemaDir } from './schemas.js';

const ajv = new Ajv2020.default({ ...AJV_OPTIONS, code: { source: true } });
mkdirSync(compiledDir, { recursive: true });
for (const name of SCHEMA_NAMES) {
  const schema = JSON.parse(readFileSync(new URL(`${name}.schema.json`, schemaDir), 'utf8')) as object;
  const code = standaloneCode.default(ajv, ajv.compile(schema));
  writeFileSync(new URL(`${name}.cjs`, compiledDir), code);
}
