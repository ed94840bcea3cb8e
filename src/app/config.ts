// The configuration as the server loads it: config/load.ts with the built-in stages' catalog,
// so callers need not know that stage options and requirements come from the registry.

import type { Logger } from 'pino';
import { loadConfig as load, reloadConfig as reload, linednsSchema, type ConfigIssue, type ConfigOverrides, type SourceDocuments } from '../config/load.js';
import type { RuntimeConfig } from '../config/types.js';
import { BUILTIN_BY_NAME } from '../stages/index.js';

export function loadConfig(file: string | null, overrides: ConfigOverrides = {}, documents?: SourceDocuments): { config: RuntimeConfig; warnings: ConfigIssue[] } {
  return load(BUILTIN_BY_NAME, file, overrides, documents);
}

export function reloadConfig(file: string | null, overrides: ConfigOverrides, logger: Logger, documents?: SourceDocuments): RuntimeConfig | null {
  return reload(BUILTIN_BY_NAME, file, overrides, logger, documents);
}

/** linedns.json's JSON Schema with the built-in stages' options (schemas/linedns.schema.json). */
export function builtinSchema(): object {
  return linednsSchema(BUILTIN_BY_NAME);
}

/** The text of schemas/linedns.schema.json: what an editor validates linedns.json with. */
export function linednsSchemaText(): string {
  return `${JSON.stringify(builtinSchema(), null, 2)}\n`;
}
