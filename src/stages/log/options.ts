// The log stage's options: their JSON Schema, with the defaults, and their type.
// Where query lines go, how many, and which (names, rcodes); linedns.schema.json is generated from it.

import { rcodeFromName } from '../../lib/dns/constants.js';
import { checkPresentationName } from '../../lib/dns/name.js';
import type { OptionsSpec } from '../../core/stage.js';

export interface LogOptions {
  /** A file to append to (relative to linedns.json), reopened on SIGUSR1; null: standard output. */
  readonly file: string | null;
  /** "info": every query; "warn": only failures (SERVFAIL, REFUSED, FORMERR, NOTIMP, ...). */
  readonly level: 'info' | 'warn';
  /** Log one query in this many (1: all). */
  readonly sample: number;
  /** Only these names and the names under them (empty: all). */
  readonly names: readonly string[];
  /** Only replies with these rcodes, by name (empty: all). */
  readonly rcodes: readonly string[];
}

export const logOptions: OptionsSpec<LogOptions> = {
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      file: { description: 'File to append query lines to, relative to linedns.json (reopened on SIGUSR1); null: standard output.', type: ['string', 'null'], minLength: 1, default: null },
      level: { description: '"info" logs every query, "warn" only failures (SERVFAIL, REFUSED, FORMERR, NOTIMP...).', enum: ['info', 'warn'], default: 'info' },
      sample: { description: 'Log one query in this many.', type: 'integer', minimum: 1, maximum: 1000000, default: 1 },
      names: { description: 'Log only these names and names under them.', type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
      rcodes: { description: 'Log only replies with these rcodes (e.g. "SERVFAIL").', type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    },
  },
  check(o, report) {
    o.rcodes.forEach((r, i) => {
      if (rcodeFromName(r) === undefined) report(['rcodes', i], 'LDNS_LOG_FILTER', `${JSON.stringify(r)} is not an rcode; expected one of NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS`);
    });
    o.names.forEach((n, i) => {
      const why = checkPresentationName(n, false);
      if (why) report(['names', i], 'LDNS_LOG_FILTER', `${JSON.stringify(n)} ${why}; expected a domain name`);
    });
  },
};
