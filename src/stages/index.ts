// The registry: built-in stage definitions by name, and the loading of user stage modules (the
// programmable part). Adding a stage touches its folder, one line here and docs/stages/.

import { pathToFileURL } from 'node:url';
import { aclStage } from './acl/index.js';
import { cacheStage } from './cache/index.js';
import { decodeStage } from './decode/index.js';
import { forwardStage } from './forward/index.js';
import { logStage } from './log/index.js';
import { rateLimitStage } from './ratelimit/index.js';
import { recordsStage } from './records/index.js';
import { rewriteStage } from './rewrite/index.js';
import { smartLineStage } from './smartline/index.js';
import { zonesStage } from './zones/index.js';
import { checkRequirements, positionOf, type DeclaredStage } from '../core/declarations.js';
import type { PipelineEnv, Stage, StageDefinition, StageEnv, StageFactory } from '../core/stage.js';
import type { PipelineEntry } from '../config/types.js';

/** Every built-in stage, in the order the docs list them. */
export const BUILTIN_STAGES: readonly StageDefinition[] = [
  logStage,
  decodeStage,
  aclStage,
  rateLimitStage,
  cacheStage,
  rewriteStage,
  recordsStage,
  zonesStage,
  smartLineStage,
  forwardStage,
] as StageDefinition[];

export const BUILTIN_BY_NAME: ReadonlyMap<string, StageDefinition> = new Map(BUILTIN_STAGES.map((d) => [d.name, d]));

function isStage(v: unknown): v is Stage {
  return typeof v === 'object' && v !== null && typeof (v as Stage).handle === 'function' && typeof (v as Stage).name === 'string';
}

function isDefinition(v: unknown): v is StageDefinition {
  return typeof v === 'object' && v !== null && typeof (v as StageDefinition).create === 'function' && typeof (v as StageDefinition).name === 'string';
}

/** A pipeline stage as built, with the declarations the app needs from it. */
export interface BuiltStage {
  readonly stage: Stage;
  /** Whether the UDP answer memo may skip this stage with these options. */
  readonly memoSafe: boolean;
}

function memoSafe(def: StageDefinition, options: unknown): boolean {
  return typeof def.memoSafe === 'function' ? def.memoSafe(options) : def.memoSafe === true;
}

/**
 * A user module exports a StageDefinition or a StageFactory (as `default`, or `definition` /
 * `createStage`), or a ready Stage object. Anything else is refused with a message naming the file.
 */
async function importUserStage(path: string): Promise<StageDefinition | StageFactory | Stage> {
  const mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const exported = mod.default ?? mod.definition ?? mod.createStage;
  if (isDefinition(exported) || typeof exported === 'function' || isStage(exported)) return exported as StageDefinition | StageFactory | Stage;
  throw new Error(`${path}: ${NOT_A_STAGE}`);
}

const NOT_A_STAGE = 'a stage module must export a definition or a factory (default, definition or createStage) giving { name, handle(ctx, next) }';

/**
 * Builds the pipeline's stages, each told its position (what the stages around it provide).
 * A user stage may let the answer memo skip it only when its definition says memoSafe or it
 * declares observesOnly: otherwise its behaviour is unknown and the memo stays off. User
 * definitions' requirements are checked here, as the loader does not import modules.
 */
export async function buildStages(entries: readonly PipelineEntry[], base: PipelineEnv): Promise<BuiltStage[]> {
  const made = await Promise.all(entries.map(async (e) => BUILTIN_BY_NAME.get(e.stage) ?? (await importUserStage(e.stage))));
  const declared: DeclaredStage[] = made.map((m, i) => ({ def: isDefinition(m) ? m : null, options: entries[i]!.options }));
  const problems = checkRequirements(declared, base.config.facts, BUILTIN_STAGES);
  if (problems.length > 0) throw new Error(problems.map((p) => `${entries[p.index]!.stage}: ${p.message}`).join('\n'));
  const built: BuiltStage[] = [];
  for (let i = 0; i < entries.length; i++) {
    const m = made[i]!;
    const options = entries[i]!.options;
    const env: StageEnv = { ...base, position: positionOf(declared, i) };
    let stage: unknown;
    let safe = false;
    if (isDefinition(m)) {
      stage = await m.create(options, env);
      safe = memoSafe(m, options);
    } else stage = typeof m === 'function' ? await m(options, env) : m;
    if (!isStage(stage)) throw new Error(`${entries[i]!.stage}: ${NOT_A_STAGE}`);
    built.push({ stage, memoSafe: safe || stage.observesOnly === true });
  }
  return built;
}

/** After a reload in place: whether the memo may serve the pipeline with its new options. */
export function memoSafeWith(entries: readonly PipelineEntry[], built: readonly BuiltStage[]): boolean {
  return entries.every((e, i) => {
    const def = BUILTIN_BY_NAME.get(e.stage);
    return def ? memoSafe(def, e.options) : built[i]!.memoSafe;
  });
}
