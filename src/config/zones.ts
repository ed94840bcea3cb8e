// The `zones` key of linedns.json: reads each master file with the zone parser and checks what the
// parser leaves to a zone (an SOA at the apex, data inside the origin, a CNAME alone at its owner).

import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { QType, typeName } from '../lib/dns/constants.js';
import { checkPresentationName, isSubdomain, normalizeName, parentName, readName } from '../lib/dns/name.js';
import { parseZoneFile, parseZoneText, type ZoneRecord } from '../lib/dns/zonefile.js';
import { isSourceUrl, sourceBytes, type SourceDocuments } from './sources.js';
import { show, type LoadedFile, type Reporter } from './issues.js';
import type { PipelineFacts, ZoneConfig } from './types.js';
import type { ConfigCode } from './codes.js';

const SOA_EXAMPLE = '"@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300"';
/** MNAME and RNAME (a root label each at least) and five 32-bit fields. */
const MIN_SOA_RDATA = 22;

/** One entry of `zones` as written: a path, or {file, origin, labels}. */
interface ZoneEntry {
  file: string;
  origin: string | null;
  labels: string[] | null;
}

function entryOf(item: unknown): ZoneEntry | null {
  if (typeof item === 'string') return { file: item, origin: null, labels: null };
  if (typeof item !== 'object' || item === null || Array.isArray(item)) return null;
  const o = item as Record<string, unknown>;
  if (typeof o.file !== 'string') return null;
  const labels = Array.isArray(o.labels) ? o.labels.filter((l): l is string => typeof l === 'string') : [];
  return { file: o.file, origin: typeof o.origin === 'string' ? o.origin : null, labels: labels.length > 0 ? labels : null };
}

/** A hash of what a client can be told, so a reload that changed nothing keeps the cache. */
function digestOf(records: readonly ZoneRecord[]): string {
  const h = createHash('sha256');
  const head = Buffer.allocUnsafe(8);
  for (const r of records) {
    h.update(r.name);
    head.writeUInt16BE(r.type, 0);
    head.writeUInt32BE(r.ttl, 2);
    head.writeUInt16BE(r.rdata.length, 6);
    h.update(head);
    h.update(r.rdata);
  }
  return h.digest('hex');
}

/** True when `rdata` is exactly one uncompressed domain name (CNAME RDATA given as \#). */
function isOneName(rdata: Buffer): boolean {
  const n = readName(rdata, 0, false);
  return n !== null && n.end === rdata.length;
}

/**
 * Reads every zone `raw.zones` names (paths relative to linedns.json through `resolvePath`),
 * reporting each problem at its file:line:col: the parser's errors in the zone file, the zone
 * checks below there too, and a bad entry (origin, unreadable file) at linedns.json's entry.
 * `lines` are smart-line.json's lines, for a warning on labels naming none (null: no file).
 */
export function loadZones(raw: Record<string, unknown>, main: LoadedFile | null, resolvePath: (p: string) => string, lines: ReadonlySet<string> | null, report: Reporter, documents?: SourceDocuments): { zones: ZoneConfig[]; labelledZone: PipelineFacts['labelledZone'] } {
  const zones: ZoneConfig[] = [];
  // The first labelled entry, loaded or not: the pipeline's requirements are checked in the same
  // run even when the file has errors, so one `linedns check` lists both.
  let labelledZone: PipelineFacts['labelledZone'] = null;
  if (!Array.isArray(raw.zones) || main === null) return { zones, labelledZone };
  /** Unlabelled zones by origin, to refuse a second one (it could never be seen). */
  const unlabelled = new Map<string, number>();
  raw.zones.forEach((item: unknown, i: number) => {
    const e = entryOf(item);
    if (e === null) return; // the schema reported it
    const at = typeof item === 'string' ? ['zones', i] : ['zones', i, 'file'];
    let origin: string | null = null;
    if (e.origin !== null) {
      const why = checkPresentationName(e.origin, false);
      if (why !== null) {
        report.at(main, ['zones', i, 'origin'], 'LDNS_ZONE_ENTRY', `${show(e.origin)} ${why}; expected the zone's domain name, e.g. "corp.example"`);
        return;
      }
      origin = normalizeName(e.origin);
    }
    const path = resolvePath(e.file);
    if (e.labels !== null) labelledZone ??= { origin: origin ?? e.file, file: path, labels: e.labels };
    // Said at the entry in linedns.json, where the mistake is; the parser would say it at 0:0.
    let fetched: Buffer | null = null;
    if (isSourceUrl(path)) {
      const got = sourceBytes(path, documents);
      if (typeof got === 'string') {
        report.at(main, at, 'LDNS_FILE_UNREADABLE', `cannot read zone ${path}: ${got}`);
        return;
      }
      fetched = got;
    } else try {
      if (!statSync(path).isFile()) throw new Error('not a regular file');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
      report.at(main, at, 'LDNS_FILE_UNREADABLE', `cannot read zone file ${path}: ${why}; expected an RFC 1035 master file, relative to this file`);
      return;
    }
    const options = origin === null ? {} : { origin };
    // A zone from a URL is one document: an $INCLUDE there would name a file of this host.
    const parsed = fetched === null ? parseZoneFile(path, options) : parseZoneText(fetched, path, { ...options, maxIncludeDepth: 0 });
    for (const z of parsed.errors) report.syntax(z.file, z.line, z.column, 'LDNS_ZONE_SYNTAX', z.message);
    const firstSoa = parsed.records.find((r) => r.type === QType.SOA);
    const apex = origin ?? firstSoa?.name ?? null;
    if (apex === null) {
      if (parsed.errors.length === 0) {
        report.syntax(path, 1, 1, 'LDNS_ZONE_SOA', `no SOA record, so the zone has no apex: expected one at the origin, e.g. ${SOA_EXAMPLE} after "$ORIGIN example.com.", or "origin" in linedns.json`);
      }
      return;
    }
    const before = report.issues.length;
    const occluded = checkZone(apex, parsed.records, path, report);
    // A warning has no place in the zone file's own positions (the Reporter's are errors there).
    if (occluded !== null) {
      const { record: r, dname } = occluded;
      report.syntax(r.file, r.line, r.column, 'LDNS_ZONE_DNAME', `"${r.name}" is below the DNAME at "${dname.name}" (${dname.line}:${dname.column}), which redirects every name under it: this data is never served (RFC 6672 2.4)`);
    }
    if (parsed.errors.length > 0 || report.issues.slice(before).some((x) => x.severity === 'error')) return;
    e.labels?.forEach((l, j) => {
      if (lines !== null && !lines.has(l)) report.at(main, ['zones', i, 'labels', j], 'LDNS_ZONE_UNKNOWN_LABEL', `label "${l}" is not a line in smart-line.json: no client will see this zone`);
      if (lines === null) report.at(main, ['zones', i, 'labels', j], 'LDNS_ZONE_UNKNOWN_LABEL', `label "${l}" names a line, and no smart-line.json is given: only a user classifier can put clients in it`);
    });
    if (e.labels === null) {
      const other = unlabelled.get(apex);
      if (other !== undefined) {
        report.at(main, ['zones', i], 'LDNS_ZONE_ENTRY', `a second zone for "${apex}" without labels (zones[${other}] is one): only the first would ever answer; expected labels on one of them (a view) or one file`);
        return;
      }
      unlabelled.set(apex, i);
    }
    const records = Object.freeze(parsed.records);
    zones.push(Object.freeze({ file: path, origin: apex, labels: e.labels === null ? null : Object.freeze(e.labels), records, digest: digestOf(records) }));
    if (labelledZone?.file === path && labelledZone.origin !== apex) labelledZone = { ...labelledZone, origin: apex };
  });
  return { zones, labelledZone };
}

/**
 * The zone-level rules, each error at the record that breaks it; returns the first record a DNAME
 * occludes (data below a DNAME's owner, which substitution makes unreachable), if any.
 */
function checkZone(apex: string, records: readonly ZoneRecord[], file: string, report: Reporter): { record: ZoneRecord; dname: ZoneRecord } | null {
  const err = (r: ZoneRecord, code: ConfigCode, message: string): void => report.syntax(r.file, r.line, r.column, code, message);
  let soa: ZoneRecord | null = null;
  /** Per owner: its first CNAME and its first record of another type. */
  const cnames = new Map<string, ZoneRecord>();
  const others = new Map<string, ZoneRecord>();
  const dnames = new Map<string, ZoneRecord>();
  for (const r of records) {
    if (!isSubdomain(r.name, apex)) {
      err(r, 'LDNS_ZONE_OUT_OF_ZONE', `"${r.name}" is outside the zone "${apex}": expected names at or below the origin (a relative name, or an absolute one ending in "${apex}.")`);
      continue;
    }
    if (r.type === QType.SOA) {
      if (r.name !== apex) err(r, 'LDNS_ZONE_SOA', `an SOA at "${r.name}", below the apex: expected the zone's one SOA at "${apex}" (a zone cut takes NS records, not an SOA)`);
      else if (soa !== null) err(r, 'LDNS_ZONE_SOA', `a second SOA at the apex (the first is at ${soa.file}:${soa.line}:${soa.column}): expected one`);
      else if (r.rdata.length < MIN_SOA_RDATA) err(r, 'LDNS_ZONE_SOA', `an SOA with ${r.rdata.length} octets of RDATA: expected MNAME, RNAME and five 32-bit fields`);
      else soa = r;
    }
    if (r.type === QType.CNAME) {
      if (!isOneName(r.rdata)) {
        err(r, 'LDNS_ZONE_CNAME', 'CNAME RDATA that is not one domain name: expected the target name');
        continue;
      }
      const first = cnames.get(r.name);
      if (first !== undefined) err(r, 'LDNS_ZONE_CNAME', `a second CNAME at "${r.name}" (the first is at ${first.line}:${first.column}): an alias has one target (RFC 1034 3.6.2)`);
      else {
        const other = others.get(r.name);
        if (other !== undefined) err(r, 'LDNS_ZONE_CNAME', `a CNAME at "${r.name}", which already has ${typeName(other.type)} data at ${other.line}:${other.column}: expected a CNAME alone at its owner (RFC 1034 3.6.2)`);
        cnames.set(r.name, r);
      }
    } else if (!others.has(r.name)) {
      others.set(r.name, r);
      const c = cnames.get(r.name);
      if (c !== undefined) err(r, 'LDNS_ZONE_CNAME', `${typeName(r.type)} data at "${r.name}", which has a CNAME at ${c.line}:${c.column}: expected a CNAME alone at its owner (RFC 1034 3.6.2)`);
    }
    if (r.type === QType.DNAME && !dnames.has(r.name)) dnames.set(r.name, r);
  }
  if (soa === null && !records.some((r) => r.type === QType.SOA && r.name === apex)) {
    report.syntax(file, 1, 1, 'LDNS_ZONE_SOA', `no SOA record at the apex "${apex}": expected one, e.g. ${SOA_EXAMPLE}`);
  }
  if (dnames.size === 0) return null;
  for (const r of records) {
    for (let n = parentName(r.name); n !== null && isSubdomain(n, apex); n = parentName(n)) {
      const dname = dnames.get(n);
      if (dname !== undefined) return { record: r, dname };
    }
  }
  return null;
}
