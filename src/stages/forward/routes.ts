// The forward stage's routes: which upstreams a question goes to, by the longest matching zone
// and, for a route with labels, the client's lines. Built once per config; a few map lookups per query.

import type { QueryContext } from '../../core/context.js';
import type { LineSet } from '../../core/views.js';
import type { UpstreamPolicy } from '../../config/types.js';
import type { UpstreamState } from './upstreams.js';

export interface Route {
  /** Canonical zone, '' for the root. */
  readonly zone: string;
  /** Lines it serves; null: every client. */
  readonly labels: ReadonlySet<string> | null;
  /** As logs, metrics and explain name it: the zone ("." for the root), then "@" and its labels. */
  readonly name: string;
  readonly upstreams: readonly UpstreamState[];
  readonly forceTcp: boolean;
  readonly policy: UpstreamPolicy;
  /** round_robin's counter. */
  turn: number;
}

export function routeName(zone: string, labels: readonly string[] | null): string {
  return `${zone === '' ? '.' : zone}${labels === null ? '' : `@${labels.join(',')}`}`;
}

/** The routes of one zone: the labelled ones in the order written, then the one for everyone. */
interface ZoneRoutes {
  readonly labelled: Route[];
  unlabelled: Route | null;
}

function inLines(lines: LineSet | null, labels: ReadonlySet<string>): boolean {
  if (lines === null) return false;
  const l = lines.lines;
  for (let i = 0; i < l.length; i++) if (labels.has(l[i]!)) return true;
  return false;
}

export class RouteTable {
  private readonly zones = new Map<string, ZoneRoutes>();
  /** Labels in the deepest zone: suffixes with more labels than this cannot match. */
  private maxDepth = 0;
  /** Whether any route but the root's exists: without, matching costs nothing. */
  readonly routed: boolean;

  constructor(
    /** The top-level upstreams: the route for ".", for every client. */
    readonly root: Route,
    routes: readonly Route[],
  ) {
    for (const r of routes) {
      let z = this.zones.get(r.zone);
      if (z === undefined) {
        z = { labelled: [], unlabelled: null };
        this.zones.set(r.zone, z);
      }
      // The loader refused duplicates; the first stays should one get here anyway.
      if (r.labels !== null) z.labelled.push(r);
      else z.unlabelled ??= r;
      this.maxDepth = Math.max(this.maxDepth, r.zone === '' ? 0 : r.zone.split('.').length);
    }
    this.routed = routes.length > 0;
  }

  /** Every route, the root's first. */
  all(): Route[] {
    const out = [this.root];
    for (const z of this.zones.values()) out.push(...z.labelled, ...(z.unlabelled === null ? [] : [z.unlabelled]));
    return out;
  }

  /**
   * The route for the query's name: the longest zone that has a route this client may take. A
   * labelled route consulted makes the answer depend on the view (`variesByView`), taken or not:
   * a client in other lines would have gone elsewhere. Notes say why when tracing.
   */
  match(ctx: QueryContext): Route {
    if (!this.routed) return this.root;
    const name = ctx.query!.name;
    // Start at the suffix with maxDepth labels (or the whole name), then drop a label at a time.
    let labels = name === '' ? 0 : 1;
    for (let i = 0; i < name.length; i++) if (name.charCodeAt(i) === 0x2e) labels++;
    let at = 0;
    for (let skip = labels - this.maxDepth; skip > 0; skip--) at = name.indexOf('.', at) + 1;
    for (;;) {
      const z = this.zones.get(at === 0 ? name : at > name.length ? '' : name.slice(at));
      if (z !== undefined) {
        const r = this.pick(ctx, z);
        if (r !== null) return r;
      }
      if (at > name.length) break;
      const dot = name.indexOf('.', at);
      at = dot < 0 ? name.length + 1 : dot + 1;
      if (name === '') break;
    }
    return this.root;
  }

  private pick(ctx: QueryContext, z: ZoneRoutes): Route | null {
    if (z.labelled.length > 0) {
      ctx.set('variesByView', true);
      const lines = ctx.lines;
      for (let i = 0; i < z.labelled.length; i++) {
        const r = z.labelled[i]!;
        if (inLines(lines, r.labels!)) {
          if (ctx.tracing) ctx.note(`forward: route ${r.name}: the client's lines (${lines!.lines.join(', ')}) include its labels`);
          return r;
        }
        if (ctx.tracing) ctx.note(`forward: route ${r.name} skipped: the client's lines (${lines === null ? 'not classified' : lines.lines.join(', ') || 'none'}) are not among its labels`);
      }
    }
    if (z.unlabelled !== null && ctx.tracing) ctx.note(`forward: route ${z.unlabelled.name}: the longest zone with a route for every client`);
    return z.unlabelled;
  }
}
