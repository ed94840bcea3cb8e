// In-process counters: every drop, error and answer source is counted here.
// Counters are plain objects so the hot path pays one property increment.

export interface Counter {
  readonly name: string;
  readonly help: string;
  value: number;
}

export class Metrics {
  private readonly counters = new Map<string, Counter>();

  /** Returns the counter of that name, creating it on first use. */
  counter(name: string, help = ''): Counter {
    let c = this.counters.get(name);
    if (c === undefined) {
      c = { name, help, value: 0 };
      this.counters.set(name, c);
    }
    return c;
  }

  get(name: string): number {
    return this.counters.get(name)?.value ?? 0;
  }

  /** Every counter made so far, in the order first asked for (read at scrape time by admin). */
  all(): IterableIterator<Counter> {
    return this.counters.values();
  }

  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, c] of this.counters) out[k] = c.value;
    return out;
  }
}
