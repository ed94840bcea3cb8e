// The `routes` key of linedns.json: per-zone (and per-line) upstreams for the forward stage,
// checked for what a schema cannot see (zone names, duplicates, labels no client can have).

import { formatHostPort } from '../lib/net/address.js';
import { checkPresentationName, normalizeName } from '../lib/dns/name.js';
import { upstreamsFrom } from './addresses.js';
import { show, type LoadedFile, type Reporter } from './issues.js';
import type { ListenAddress, PipelineFacts, RouteConfig, UpstreamPolicy } from './types.js';

/** The route's key for duplicates: its zone and its labels, in any order. */
function keyOf(zone: string, labels: readonly string[] | null): string {
  return labels === null ? zone : `${zone}\u0000${[...new Set(labels)].sort().join('\u0000')}`;
}

/**
 * Reads `raw.routes`. `lines` are smart-line.json's lines (null: no file, so only a user
 * classifier can say who is in a line and labels cannot be checked here); `listen` are
 * linedns's own addresses, which no route may forward to.
 */
export function loadRoutes(
  raw: Record<string, unknown>,
  main: LoadedFile | null,
  lines: ReadonlySet<string> | null,
  listen: readonly ListenAddress[],
  report: Reporter,
): { routes: RouteConfig[]; labelledRoute: PipelineFacts['labelledRoute'] } {
  const routes: RouteConfig[] = [];
  let labelledRoute: PipelineFacts['labelledRoute'] = null;
  if (!Array.isArray(raw.routes) || main === null) return { routes, labelledRoute };
  const seen = new Map<string, number>();
  raw.routes.forEach((item: unknown, i: number) => {
    // Anything but an object with a string zone and an upstreams array: the schema reported it.
    if (typeof item !== 'object' || item === null || Array.isArray(item)) return;
    const o = item as Record<string, unknown>;
    if (typeof o.zone !== 'string' || !Array.isArray(o.upstreams)) return;
    const labelList = Array.isArray(o.labels) ? o.labels.filter((l): l is string => typeof l === 'string') : [];
    const labels = labelList.length > 0 ? labelList : null;
    if (labels !== null) labelledRoute ??= { zone: o.zone, labels };
    const why = checkPresentationName(o.zone, false);
    if (why !== null) {
      report.at(main, ['routes', i, 'zone'], 'LDNS_ROUTE_ZONE', `${show(o.zone)} ${why}; expected a domain name, e.g. "cluster.local"`);
      return;
    }
    const canonical = normalizeName(o.zone);
    const zone = canonical === '.' ? '' : canonical;
    if (zone === '' && labels === null) {
      report.at(main, ['routes', i, 'zone'], 'LDNS_ROUTE_DUPLICATE', `a route for "." without labels is the top-level "upstreams"; expected those upstreams in "upstreams", or "labels" on this route`);
      return;
    }
    const key = keyOf(zone, labels);
    const other = seen.get(key);
    if (other !== undefined) {
      report.at(main, ['routes', i, 'zone'], 'LDNS_ROUTE_DUPLICATE', `routes[${other}] is already the route for ${show(o.zone)}${labels === null ? '' : ` with the same labels`}: only the first would ever be used; expected one route per zone and set of labels`);
      return;
    }
    seen.set(key, i);
    labels?.forEach((l, j) => {
      if (lines !== null && !lines.has(l)) report.at(main, ['routes', i, 'labels', j], 'LDNS_ROUTE_UNKNOWN_LABEL', `label "${l}" is not a line in smart-line.json: no client will ever take this route; expected one of ${[...lines].map((n) => `"${n}"`).join(', ') || '(no lines)'}`);
    });
    const sources: number[] = [];
    const upstreams = upstreamsFrom(o.upstreams, main, ['routes', i, 'upstreams'], report, sources);
    upstreams.forEach((u, k) => {
      if (!listen.some((l) => l.host === u.host && l.port === u.port)) return;
      report.at(main, ['routes', i, 'upstreams', sources[k]!], 'LDNS_UPSTREAM_SELF', `upstream ${formatHostPort(u.host, u.port)} is one of linedns's own listen addresses, so every query of this route would come back to linedns; expected the address of another resolver`);
    });
    const policy = typeof o.policy === 'string' ? (o.policy as UpstreamPolicy) : null;
    routes.push({ zone, upstreams, labels, forceTcp: o.forceTcp === true, policy });
  });
  return { routes, labelledRoute };
}
