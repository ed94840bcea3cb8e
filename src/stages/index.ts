// Builds the pipeline from the `pipeline` list: built-in stage names map to their factories,
// paths load the user's own stage modules (the programmable part).

import { pathToFileURL } from 'node:url';
import { createAclStage } from './acl/index.js';
import { createCacheStage } from './cache/index.js';
import { createDecodeStage } from './decode/index.js';
import { createForwardStage } from './forward/index.js';
import { createRateLimitStage } from './ratelimit/index.js';
import { createRecordsStage } from './records/index.js';
import { createSmartLineStage } from './smartline/index.js';
import type { Stage, StageEnv, StageFactory } from '../core/stage.js';

export const BUILTIN_FACTORIES: Readonly<Record<string, StageFactory>> = {
  decode: createDecodeStage,
  acl: createAclStage,
  ratelimit: createRateLimitStage,
  smartline: createSmartLineStage,
  records: createRecordsStage,
  cache: createCacheStage,
  forward: createForwardStage,
};

function isStage(v: unknown): v is Stage {
  return typeof v === 'object' && v !== null && typeof (v as Stage).handle === 'function' && typeof (v as Stage).name === 'string';
}

/**
 * A user module exports a StageFactory as `default` (or `createStage`), or a ready Stage object.
 * Anything else is refused with a message naming the file.
 */
async function loadUserStage(path: string, env: StageEnv): Promise<Stage> {
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const exported = mod.default ?? mod.createStage;
  const made = typeof exported === 'function' ? await (exported as StageFactory)(undefined, env) : exported;
  if (!isStage(made)) throw new Error(`${path}: a stage module must export a factory (default or createStage) returning { name, handle(ctx, next) }`);
  return made;
}

/** The stages built from BUILTIN_FACTORIES: their behaviour is known (see Engine's answer memo). */
const builtins = new WeakSet<Stage>();

export function isBuiltinStage(stage: Stage): boolean {
  return builtins.has(stage);
}

export async function buildStages(entries: readonly string[], env: StageEnv): Promise<Stage[]> {
  const stages: Stage[] = [];
  for (const entry of entries) {
    const factory = BUILTIN_FACTORIES[entry];
    if (factory) {
      const stage = await factory(undefined, env);
      builtins.add(stage);
      stages.push(stage);
    } else stages.push(await loadUserStage(entry, env));
  }
  return stages;
}
