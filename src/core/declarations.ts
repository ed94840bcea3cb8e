// Checks a pipeline against its stages' declarations (requires/provides, fastify's
// checkDependencies idea): the loader refuses a pipeline that breaks one, with the stage's reason.

import type { PipelinePosition, StageDefinition } from './stage.js';
import type { PipelineFacts } from '../config/types.js';

export interface DeclaredStage {
  /** Null for a stage without declarations (a user module exporting only a factory). */
  readonly def: StageDefinition | null;
  readonly options: unknown;
}

export interface RequirementProblem {
  /** Index of the stage whose requirement is broken. */
  readonly index: number;
  readonly message: string;
}

const quote = (s: string): string => `"${s}"`;

/**
 * Every requirement of every stage that no stage on the required side provides. `known` are the
 * definitions a message may suggest as providers (the built-in ones).
 */
export function checkRequirements(stages: readonly DeclaredStage[], facts: PipelineFacts, known: readonly StageDefinition[]): RequirementProblem[] {
  const problems: RequirementProblem[] = [];
  stages.forEach((s, index) => {
    const def = s.def;
    if (def === null) return;
    for (const req of def.requires ?? []) {
      if (req.when !== undefined && !req.when(s.options, facts)) continue;
      const before = stages.slice(0, index);
      const after = stages.slice(index + 1);
      const side = req.where === 'before' ? before : req.where === 'after' ? after : [...before, ...after];
      if (side.some((o) => provides(o, req.name))) continue;
      const providers = known.filter((k) => k.provides?.includes(req.name) === true).map((k) => quote(k.name));
      const elsewhere = req.where !== 'anywhere' && (req.where === 'before' ? after : before).some((o) => provides(o, req.name));
      const place = req.where === 'anywhere' ? 'in the pipeline' : `${req.where} ${quote(def.name)}`;
      const fix = providers.length === 0 ? '' : `; expected ${providers.join(' or ')} ${place}${elsewhere ? ' (it is on the other side now)' : ''}`;
      const from = req.where === 'anywhere' ? 'a stage in the pipeline' : `a stage ${req.where} it`;
      problems.push({ index, message: `${quote(def.name)} needs ${quote(req.name)} from ${from}: ${typeof req.reason === 'string' ? req.reason : req.reason(facts)}${fix}` });
    }
  });
  return problems;
}

function provides(stage: DeclaredStage, name: string): boolean {
  return stage.def?.provides?.includes(name) === true;
}

/** The position of stage `index` among `stages`, as its env tells it. */
export function positionOf(stages: readonly DeclaredStage[], index: number): PipelinePosition {
  return {
    providedBefore: (name) => stages.slice(0, index).some((s) => provides(s, name)),
    providedAfter: (name) => stages.slice(index + 1).some((s) => provides(s, name)),
  };
}
