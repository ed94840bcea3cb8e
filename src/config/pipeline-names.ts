// How a pipeline entry tells a user module from a built-in stage: written once, used by the
// loader and by the schema (a module path is any key matching the pattern).

/** A path: starting with "." or "/", or ending in .js or .mjs. */
export const isModulePathPattern = '^[./]|\\.m?js$';

const MODULE_PATH = new RegExp(isModulePathPattern);

export function isModulePath(entry: string): boolean {
  return MODULE_PATH.test(entry);
}
