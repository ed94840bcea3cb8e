// What the core knows of a client's smart lines: the smartline stage computes them, the context
// carries them, other stages (records) read them, so the type lives below every stage.

/** A client's lines, most specific CIDR first; interned so equal sets share one id. */
export interface LineSet {
  readonly id: number;
  readonly lines: readonly string[];
}

export const NO_LINES: LineSet = Object.freeze({ id: 0, lines: Object.freeze([]) as readonly string[] });

/**
 * Interns a list of lines (most specific first) as one LineSet. Process-wide, so an id names
 * the same list whoever classified it (smartline's table, a user classifier) and across reloads:
 * answers memoised or cached per view id can never be served to another list of lines.
 */
const interned = new Map<string, LineSet>([['', NO_LINES]]);
/** The same sets by id: metrics count replies per id and name the lines only at scrape time. */
const byId: LineSet[] = [NO_LINES];

export function lineSetById(id: number): LineSet | undefined {
  return byId[id];
}

export function internLines(lines: readonly string[]): LineSet {
  const key = lines.join('\u0000');
  let set = interned.get(key);
  if (set === undefined) {
    set = Object.freeze({ id: interned.size, lines: Object.freeze([...lines]) });
    interned.set(key, set);
    byId.push(set);
  }
  return set;
}

/** Computes a client's view; called at most once per query, on first use of `ctx.lines`. */
export type ViewClassifier<C> = (ctx: C) => LineSet;

/**
 * Where the classifier of a server lives, registered once when a stage is built (not per query),
 * so that any stage, even one before the classifying stage (the cache), can ask for the view.
 * The smartline stage registers the default; a user stage may register its own, which wins.
 */
export class ViewRegistry<C> {
  private custom: ViewClassifier<C> | null = null;
  /** The classifier in force; read by the engine once per query. */
  classifier: ViewClassifier<C> | null = null;

  /** The smartline stage's classifier (replaced on reload). */
  setDefault(fn: ViewClassifier<C>): void {
    this.classifier = this.custom ?? fn;
  }

  /** A user stage's classifier: overrides smartline's. Two of them would be ambiguous. */
  register(fn: ViewClassifier<C>): void {
    if (this.custom !== null && this.custom !== fn) throw new Error('a view classifier is already registered by another stage');
    this.custom = fn;
    this.classifier = fn;
  }

  /** For user classifiers: the interned LineSet of a list of lines. */
  intern(lines: readonly string[]): LineSet {
    return internLines(lines);
  }
}
