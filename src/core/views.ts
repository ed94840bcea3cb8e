// What the core knows of a client's smart lines: the smartline stage computes them, the context
// carries them, other stages (records) read them, so the type lives below every stage.

/** A client's lines, most specific CIDR first; interned so equal sets share one id. */
export interface LineSet {
  readonly id: number;
  readonly lines: readonly string[];
}

export const NO_LINES: LineSet = Object.freeze({ id: 0, lines: Object.freeze([]) as readonly string[] });
