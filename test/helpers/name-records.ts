// records.json entries for the name-handling tests: a local zone, a CNAME to a UTF-8 owner, and
// a wildcard, deny and nxdomain entry, each of which names with any octets can fall under.

import type { RecordEntry } from '../../src/config/types.js';

const SOA = { mname: 'ns.local.test', rname: 'hostmaster.local.test', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 60 };

export const NAME_RECORDS: RecordEntry[] = [
  { name: 'local.test', type: 'SOA', rdata: SOA },
  { name: 'host.local.test', type: 'A', rdata: '192.0.2.1' },
  { name: 'alias.local.test', type: 'CNAME', rdata: 'host.local.test' },
  { name: 'é.local.test', type: 'A', rdata: '192.0.2.3' },
  { name: 'utf.local.test', type: 'CNAME', rdata: 'é.local.test' },
  { name: '*.wild.test', type: 'A', rdata: '192.0.2.2' },
  { name: '*.deny.test', action: 'deny' },
  { name: 'deny.test', action: 'deny' },
  { name: '*.nx.test', action: 'nxdomain' },
];
