// Tests of the zone-file parser (src/lib/dns/zonefile.ts) on the corpus in test/fixtures/zones/:
// each feature, each error at its exact line:col, include loops and depth, limits, and nsd's view.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { QType, typeName } from '../src/lib/dns/constants.js';
import { keyToWire, normalizeName } from '../src/lib/dns/name.js';
import { parseIp, parseIPv6 } from '../src/lib/net/address.js';
import { formatZoneError, parseTtl, parseZoneFile, parseZoneText, type ZoneParseResult, type ZoneRecord } from '../src/lib/dns/zonefile.js';

// Fixtures are read from the repository, not dist, which holds no copies of them.
const ZONES = fileURLToPath(new URL('../../test/fixtures/zones/', import.meta.url));
/** Paths as the user would give them, so messages in assertions do not depend on the checkout. */
const rel = (p: string): string => relative(process.cwd(), join(ZONES, p));

function show(r: ZoneRecord): string {
  return `${r.name} ${typeName(r.type)} ${r.ttl} ${r.rdata.toString('hex')}`;
}

function errors(res: ZoneParseResult): string[] {
  return res.errors.map((e) => `${e.line}:${e.column} ${e.message}`);
}

function ok(path: string): ZoneRecord[] {
  const res = parseZoneFile(rel(path));
  assert.deepEqual(res.errors.map(formatZoneError), [], path);
  return res.records;
}

function find(records: ZoneRecord[], name: string, type: number): ZoneRecord {
  const r = records.find((x) => x.name === name && x.type === type);
  assert.ok(r, `${name} ${typeName(type)} missing`);
  return r;
}

const hex = (...parts: (string | Buffer)[]): string => parts.map((p) => (typeof p === 'string' ? p : p.toString('hex'))).join('');
const u16 = (n: number): string => n.toString(16).padStart(4, '0');
const u32 = (n: number): string => n.toString(16).padStart(8, '0');

test('basic.zone: every supported type, @, relative names, blank owners, parentheses, comments', () => {
  const rs = ok('valid/basic.zone');
  assert.equal(rs.length, 18);
  const soa = find(rs, 'example.com', QType.SOA);
  assert.equal(soa.rdata.toString('hex'), hex(keyToWire('ns1.example.com'), keyToWire('hostmaster.example.com'), u32(2024010101), u32(7200), u32(3600), u32(1209600), u32(300)));
  assert.deepEqual([soa.file, soa.line, soa.column], [rel('valid/basic.zone'), 4, 1]);
  // Blank owners take the previous owner: NS and MX belong to the apex, AAAA to ns1.
  assert.deepEqual(rs.filter((r) => r.name === 'example.com').map((r) => typeName(r.type)), ['SOA', 'NS', 'NS', 'MX', 'MX', 'CAA', 'CAA', 'TXT']);
  const aaaa = find(rs, 'ns1.example.com', QType.AAAA);
  assert.equal(aaaa.rdata.toString('hex'), '20010db8000000000000000000000001');
  assert.deepEqual([aaaa.line, aaaa.column], [15, 2]);
  const mx = rs.filter((r) => r.type === QType.MX).map((r) => r.rdata.toString('hex'));
  assert.deepEqual(mx, [hex(u16(10), keyToWire('mail.example.com')), hex(u16(20), keyToWire('mail.example.net'))]);
  assert.equal(find(rs, 'www.example.com', QType.CNAME).rdata.toString('hex'), hex(keyToWire('example.com')));
  assert.equal(find(rs, 'ftp.example.com', QType.CNAME).rdata.toString('hex'), hex(keyToWire('www.example.com')));
  assert.equal(find(rs, '_sip._tcp.example.com', QType.SRV).rdata.toString('hex'), hex(u16(10), u16(60), u16(5060), keyToWire('sip.example.com')));
  assert.equal(find(rs, '2.0.example.com', QType.PTR).rdata.toString('hex'), hex(keyToWire('host.example.com')));
  assert.equal(find(rs, 'legacy.example.com', QType.DNAME).rdata.toString('hex'), hex(keyToWire('example.net')));
  const caa = rs.filter((r) => r.type === QType.CAA).map((r) => r.rdata);
  assert.deepEqual(caa[0], Buffer.concat([Buffer.from([0, 5]), Buffer.from('issueletsencrypt.org')]));
  assert.deepEqual(caa[1], Buffer.concat([Buffer.from([128, 3]), Buffer.from('tbsUnknown')]));
  assert.deepEqual(find(rs, 'example.com', QType.TXT).rdata, Buffer.from('\x0bv=spf1 -all'));
  assert.equal(find(rs, 'mapped.example.com', QType.AAAA).rdata.toString('hex'), '00000000000000000000ffffc0000201');
  assert.ok(rs.every((r) => r.class === 1 && r.ttl === 3600));
});

test('ttl.zone: units in any case, TTL and class in either order, $TTL changes', () => {
  const rs = ok('valid/ttl.zone');
  const ttls = Object.fromEntries(rs.map((r) => [r.name.split('.')[0], r.ttl]));
  assert.deepEqual(ttls, { ttl: 5400, ns: 5400, a: 300, b: 300, c: 172800, d: 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5, e: 60, f: 5400, g: 0, h: 2147483647 });
  assert.equal(find(rs, 'ttl.test', QType.SOA).rdata.subarray(-16).toString('hex'), hex(u32(3600), u32(900), u32(604800), u32(86400)));
});

test('strings.zone: quotes, \\" \\\\ \\DDD, escaped spaces, strings over two lines', () => {
  const rs = ok('valid/strings.zone');
  const txt = (n: string): string[] => {
    const d = find(rs, `${n}.strings.test`, QType.TXT).rdata;
    const out: string[] = [];
    for (let i = 0; i < d.length; i += 1 + d[i]!) out.push(d.subarray(i + 1, i + 1 + d[i]!).toString('utf8'));
    return out;
  };
  assert.deepEqual(txt('q1'), ['a "quoted" word']);
  assert.deepEqual(txt('q2'), ['back\\slash', 'semi;colon', 'paren ( ) inside']);
  assert.deepEqual(txt('q3'), ['ABC', 'café', '']);
  assert.deepEqual(txt('q4'), ['unquoted with spaces', 'two']);
  assert.deepEqual(txt('q5'), ['spans', 'two lines']);
  assert.deepEqual(txt('q6'), ['café']);
  assert.equal(find(rs, 'long.strings.test', QType.TXT).rdata.length, 256);
});

test('generic.zone: RFC 3597 \\# for unknown and known types, TYPEnnn spellings', () => {
  const rs = ok('valid/generic.zone');
  assert.equal(find(rs, 'u1.generic.test', 65280).rdata.toString('hex'), '0a000001');
  assert.equal(find(rs, 'u2.generic.test', 65281).rdata.length, 0);
  assert.equal(find(rs, 'u3.generic.test', 65282).rdata.toString('hex'), '010203040506');
  assert.equal(find(rs, 'k1.generic.test', QType.A).rdata.toString('hex'), 'c0000202');
  assert.equal(find(rs, 'k2.generic.test', QType.A).rdata.toString('hex'), 'c0000203');
  assert.equal(find(rs, 'k3.generic.test', QType.MX).rdata.toString('hex'), '000a046d61696c00');
});

test('names.zone: escapes, case, wildcards, the root, $ORIGIN changes, non-ASCII octets as name.ts spells them', () => {
  const rs = ok('valid/names.zone');
  const owners = rs.map((r) => r.name);
  for (const n of ['names.test', 'upper.names.test', 'dot\\.in\\.label.names.test', 'a\\032b.names.test', '*.names.test', '*.wild.names.test', 'x\\001y.names.test', 'host.sub.names.test', 'sub.names.test', 'back.names.test']) {
    assert.ok(owners.includes(n), `${n} in ${owners.join(' ')}`);
  }
  // The owner of a UTF-8 name is the key normalizeName gives the same name in records.json.
  assert.ok(owners.includes(normalizeName('café.names.test')));
  assert.ok(owners.includes('caf\\195\\169.names.test'));
  assert.equal(find(rs, '*.wild.names.test', QType.MX).rdata.toString('hex'), '000000');
  // Names in RDATA are lower-cased like keyToWire's.
  assert.deepEqual(find(rs, 'back.names.test', QType.CNAME).rdata, keyToWire('host.sub.names.test'));
  assert.deepEqual(find(rs, 'sub.names.test', QType.NS).rdata, keyToWire('ns.names.test'));
  // Every owner goes back on the wire through keyToWire, which inverts readName's escapes.
  assert.deepEqual(keyToWire('dot\\.in\\.label.names.test').subarray(0, 13), Buffer.from('\x0cdot.in.label'));
});

test('nottl.zone: without $TTL the SOA takes its minimum and later records the previous TTL', () => {
  const rs = ok('valid/nottl.zone');
  assert.deepEqual(rs.map((r) => `${r.name.split('.')[0]} ${r.ttl}`), ['nottl 900', 'nottl 900', 'ns 600', 'www 600']);
});

test('include.zone: $INCLUDE relative to the including file, with an origin, state restored after', () => {
  const rs = ok('valid/include.zone');
  assert.deepEqual(rs.map((r) => `${r.name} ${typeName(r.type)} ${relative(ZONES, r.file)}:${r.line}:${r.column}`), [
    'inc.test SOA valid/include.zone:4:1',
    'ns.inc.test A valid/include.zone:5:1',
    'h1.inc.test A valid/include/hosts.zone:2:1',
    'h2.inc.test A valid/include/hosts.zone:3:1',
    'sub.inc.test A valid/include/sub.zone:2:1',
    'x.sub.inc.test A valid/include/sub.zone:3:1',
    'y.elsewhere.inc.test A valid/include/sub.zone:5:1',
    'after.inc.test A valid/include.zone:8:1',
    'after.inc.test AAAA valid/include.zone:9:2',
  ]);
  assert.ok(rs.every((r) => r.ttl === 300));
});

test('a quoted $INCLUDE file name, a relative $ORIGIN, CRLF line ends and parseZoneText', () => {
  const text = '$ORIGIN test.\r\n$TTL 60\r\n$ORIGIN Sub\r\n$INCLUDE "include/hosts.zone"\r\nz A 192.0.2.1 ; end\r\n';
  const res = parseZoneText(text, join(ZONES, 'valid/inline.zone'));
  assert.deepEqual(errors(res), []);
  assert.deepEqual(res.records.map((r) => `${r.name} ${r.ttl}`), ['h1.sub.test 60', 'h2.sub.test 60', 'z.sub.test 60']);
});

test("an included file's $TTL and $ORIGIN end with it; a bad line in it is reported at its own position", () => {
  const dir = mkdtempSync(join(tmpdir(), 'zonefile-inc-'));
  try {
    writeFileSync(join(dir, 'top.zone'), '$ORIGIN top.test.\n$TTL 100\n$INCLUDE part/child.zone\nz A 192.0.2.3\n');
    mkdirSync(join(dir, 'part'));
    writeFileSync(join(dir, 'part', 'child.zone'), '$TTL 200\n$ORIGIN other.test.\nc A 192.0.2.1\n  A 300.1.1.1\n');
    const res = parseZoneFile(join(dir, 'top.zone'));
    assert.deepEqual(res.records.map((r) => `${r.name} ${r.ttl}`), ['c.other.test 200', 'z.top.test 100']);
    assert.deepEqual(res.errors.map(formatZoneError), [`${join(dir, 'part', 'child.zone')}:4:5: expected an IPv4 address such as 192.0.2.1, not "300.1.1.1"`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('options: origin, defaultTtl and an include depth of 0', () => {
  const res = parseZoneText('www A 192.0.2.1\n@ MX 0 mail\n$INCLUDE x.zone\n', 'mem.zone', { origin: 'Example.ORG', defaultTtl: 42, maxIncludeDepth: 0 });
  assert.deepEqual(res.records.map(show), ['www.example.org A 42 c0000201', `example.org MX 42 0000${hex(keyToWire('mail.example.org'))}`]);
  assert.deepEqual(errors(res), ['3:1 $INCLUDE nested deeper than 0 files']);
});

test('errors/many.zone: every error in one pass, each at its line:col, the good records kept', () => {
  const res = parseZoneFile(rel('errors/many.zone'));
  assert.deepEqual(res.records.map((r) => r.name), ['err.test', 'ok.err.test']);
  assert.deepEqual(errors(res), [
    '2:6 expected a TTL such as 3600 or 1h, not "1x"',
    '4:10 unknown type "FOO" (expected a type such as A or MX, or TYPEnnn)',
    '5:3 class CH is not supported (only IN)',
    '6:5 expected an IPv4 address such as 192.0.2.1, not "192.0.2.300"',
    '7:8 expected an IPv6 address such as 2001:db8::1, not "192.0.2.1"',
    '8:6 expected an MX preference 0-65535, not "70000"',
    '9:7 unterminated quoted string (a quote must close on its own line)',
    '10:15 unexpected "extra" after the RDATA',
    // Line 12 has a blank owner under the broken "h..x": skipped without a second error.
    '11:1 "h..x" has an empty label',
    '13:16 \\# says 3 octets but 2 follow',
    '14:7 a second TTL: expected a class or a type',
    '15:8 expected a domain name',
    '16:1 unknown directive "$FOO" (expected $ORIGIN, $TTL or $INCLUDE)',
    '17:7 bad escape in "a\\\\300b": expected \\DDD with DDD at most 255, or \\ before one character',
    "18:15 unbalanced ')': no parenthesis is open",
    '19:3 expected a TTL such as 3600 or 1h, not "99999999999"',
    '20:3 type OPT cannot appear in a zone file',
    '21:9 type HINFO is only supported in the RFC 3597 form: \\# <length> <hex>',
    '22:12 expected an SRV target name',
    '23:9 expected a CAA tag of letters and digits such as issue, not "issue"',
    '24:3 expected a TTL such as 3600 or 1h, not "1h1x"',
    '25:7 character string of 256 octets (at most 255)',
    '26:3 unknown type "TYPE70000" (expected a type such as A or MX, or TYPEnnn)',
    '27:17 nested parenthesis (the one opened at 27:5 is still open)',
    '29:3 class CLASS3 is not supported (only IN)',
    '30:6 a second class: expected a type such as A or MX',
    '31:18 hexadecimal RDATA has an odd number of digits',
    "33:7 unbalanced parenthesis opened at 33:7: the file ends before ')'",
  ]);
  assert.equal(formatZoneError(res.errors[0]!), `${rel('errors/many.zone')}:2:6: expected a TTL such as 3600 or 1h, not "1x"`);
});

test('errors: no owner, no TTL, no origin, includes that cannot be read', () => {
  assert.deepEqual(errors(parseZoneFile(rel('errors/noowner.zone'))), ['1:2 no owner: the line starts with white space but no record came before it']);
  assert.deepEqual(errors(parseZoneFile(rel('errors/nottl.zone'))), ['2:1 no TTL: give the record one, or put $TTL before it']);
  assert.deepEqual(errors(parseZoneFile(rel('errors/noorigin.zone'))), [
    '1:1 "www" is relative and no $ORIGIN is in effect',
    '2:21 "target" is relative and no $ORIGIN is in effect',
    '3:1 "@" needs an origin: no $ORIGIN is in effect',
  ]);
  const inc = parseZoneFile(rel('errors/include-missing.zone'));
  assert.deepEqual(errors(inc), [
    `3:1 cannot read ${rel('errors/no-such-file.zone')}: no such file`,
    '4:9 $INCLUDE takes a file name and an optional origin: expected more here',
    '5:38 "bad..origin" has an empty label',
  ]);
  assert.deepEqual(inc.records.map((r) => r.name), ['a.inc.test']);
  assert.deepEqual(errors(parseZoneFile(rel('errors/absent.zone'))), [`0:0 cannot read ${rel('errors/absent.zone')}: no such file`]);
  assert.match(errors(parseZoneFile(ZONES))[0]!, /not a regular file/);
});

test('an include loop is reported where it closes, with the chain of files', () => {
  const res = parseZoneFile(rel('loop/a.zone'));
  assert.deepEqual(res.records.map((r) => r.name), ['a.loop.test', 'b.loop.test']);
  assert.deepEqual(res.errors.map(formatZoneError), [`${rel('loop/b.zone')}:2:1: include loop: ${rel('loop/a.zone')} -> ${rel('loop/b.zone')} -> ${rel('loop/a.zone')}`]);
});

test('includes nest at most 8 deep by default', () => {
  const res = parseZoneFile(rel('deep/d0.zone'));
  assert.equal(res.records.length, 9);
  assert.deepEqual(res.errors.map(formatZoneError), [`${rel('deep/d8.zone')}:2:1: $INCLUDE nested deeper than 8 files`]);
  assert.equal(parseZoneFile(rel('deep/d0.zone'), { maxIncludeDepth: 9 }).records.length, 10);
});

test('limits: errors, records, line and entry length, name and RDATA size', () => {
  const bad = '$ORIGIN t.\n$TTL 1\n' + 'x A nope\n'.repeat(150);
  const e = parseZoneText(bad, 'bad.zone');
  assert.equal(e.errors.length, 101);
  assert.equal(e.errors[100]!.message, 'stopped after 100 errors');
  assert.equal(e.errors[99]!.line, 102);

  const many = '$ORIGIN t.\n$TTL 1\n' + 'x A 192.0.2.1\n'.repeat(50);
  const r = parseZoneText(many, 'many.zone', { maxRecords: 10 });
  assert.equal(r.records.length, 10);
  assert.deepEqual(errors(r), ['13:1 more than 10 records']);

  const long = `$ORIGIN t.\n$TTL 1\nx TXT ${'"abc" '.repeat(40)}\ny A 192.0.2.1\n`;
  assert.deepEqual(errors(parseZoneText(long, 'long.zone', { maxLineLength: 100 })), ['3:101 line longer than 100 octets']);
  const entry = `$ORIGIN t.\n$TTL 1\nx TXT (\n${'"abc"\n'.repeat(40)})\ny A 192.0.2.1\n`;
  const er = parseZoneText(entry, 'entry.zone', { maxEntryLength: 100 });
  assert.deepEqual(errors(er), ['3:7 entry longer than 100 octets (parenthesis opened at 3:7)']);
  assert.deepEqual(er.records.map((x) => x.name), ['y.t']);

  assert.deepEqual(errors(parseZoneText('x'.repeat(200), 'huge.zone', { maxTotalBytes: 100 })), ['0:0 200 octets of zone text (at most 100 in all)']);
  assert.match(errors(parseZoneFile(rel('valid/basic.zone'), { maxTotalBytes: 100 }))[0]!, /^0:0 cannot read .*basic\.zone: reading it would pass 100 octets in all$/);

  const label = 'a'.repeat(64);
  const names = `$ORIGIN t.\n$TTL 1\n${label} A 192.0.2.1\n${'abcdefghi.'.repeat(26)} A 192.0.2.1\n${'abcdefghi.'.repeat(25)}abcd A 192.0.2.1\n`;
  // Messages quote at most 60 characters of a token.
  const cut = (t: string): string => `"${t.slice(0, 57)}..."`;
  assert.deepEqual(errors(parseZoneText(names, 'names.zone')), [
    `3:1 ${cut(label)} has a label over 63 octets`,
    `4:1 ${cut('abcdefghi.'.repeat(26))} is over 255 octets on the wire`,
    `5:1 ${cut('abcdefghi.'.repeat(25))} is over 255 octets on the wire with the origin`,
  ]);
  // 250 octets plus the root is the longest name there is.
  assert.deepEqual(errors(parseZoneText(`$TTL 1\n${'abcdefghi.'.repeat(25)}abc. A 192.0.2.1\n`, 'max.zone')), []);

  const s = `"${'x'.repeat(255)}" `;
  const big = `$ORIGIN t.\n$TTL 1\nx TXT ( ${`${s}\n`.repeat(300)} )\n`;
  assert.deepEqual(errors(parseZoneText(big, 'big.zone')), ['258:1 RDATA longer than 65535 octets']);
});

test('hostile text never throws: every record has a wire-able owner and RDATA, every error a real position', () => {
  const pieces = ['$ORIGIN ', '$TTL ', '$INCLUDE ', '@', ' ', '\t', '\n', '(', ')', ';', '"', '\\', '\\0', '\\255', '.', 'a', 'A', 'IN', 'CH', '1h', '300', 'SOA', 'MX', 'TXT', 'CAA', 'SRV', 'AAAA', 'TYPE9', '\\#', '2', '0a', '192.0.2.1', '::1', 'é', 'x.', '\r'];
  fc.assert(fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 80 }), (parts) => {
    const text = `$ORIGIN fuzz.test.\n$TTL 60\n${parts.join('')}`;
    const lines = text.split('\n').length;
    const res = parseZoneText(text, 'fuzz.zone', { maxIncludeDepth: 0 });
    assert.ok(res.errors.length <= 101);
    for (const e of res.errors) assert.ok(e.line >= 1 && e.line <= lines && e.column >= 1, formatZoneError(e));
    for (const r of res.records) {
      assert.equal(keyToWire(r.name).length <= 255, true);
      assert.ok(r.rdata.length <= 65535 && r.class === 1 && r.ttl <= 0x7fffffff);
    }
  }), { numRuns: 3000 });
});

/** Presentation form of one octet in a name or string, in a way chosen by `how`. */
function present(b: number, how: number, quoted: boolean): Buffer {
  // '$' too: a line starting with it is a directive, so an owner's first octet must escape it.
  const special = b === 0x24 || b === 0x2e || b === 0x5c || b === 0x22 || b === 0x3b || b === 0x28 || b === 0x29 || b === 0x40 || b <= 0x20 || b === 0x7f;
  // A raw octet is safe unless it ends a token or starts an escape; quoted strings keep spaces.
  if (how === 0 && (!special || (quoted && b === 0x20))) return Buffer.from([b]);
  if (how === 1 && b > 0x20 && b < 0x7f && (b < 0x30 || b > 0x39)) return Buffer.from([0x5c, b]);
  return Buffer.from(`\\${String(b).padStart(3, '0')}`);
}

test('round trip: random names and strings, written with any mix of raw octets and escapes, parse to their octets', () => {
  const label = fc.uint8Array({ minLength: 1, maxLength: 20 });
  const octets = fc.array(fc.nat(2), { minLength: 300, maxLength: 300 });
  fc.assert(fc.property(fc.array(label, { minLength: 1, maxLength: 4 }), fc.uint8Array({ maxLength: 255 }), octets, (labels, txt, hows) => {
    let h = 0;
    const owner = Buffer.concat(labels.flatMap((l, i) => [...(i > 0 ? [Buffer.from('.')] : []), ...[...l].map((b) => present(b, hows[h++ % hows.length]!, false))]));
    const str = Buffer.concat([...txt].map((b) => present(b, hows[h++ % hows.length]!, true)));
    const text = Buffer.concat([Buffer.from('$ORIGIN o.test.\n'), owner, Buffer.from(' 60 TXT "'), str, Buffer.from('"\n  MX 1 '), owner, Buffer.from('\n')]);
    const res = parseZoneText(text, 'rt.zone');
    assert.deepEqual(errors(res), [], text.toString('latin1'));
    const wire = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), keyToWire('o.test')]);
    const lower = Buffer.from(wire.map((b) => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b)));
    const [t, mx] = res.records;
    assert.deepEqual(keyToWire(t!.name), lower);
    assert.equal(mx!.name, t!.name);
    assert.deepEqual(t!.rdata, Buffer.concat([Buffer.from([txt.length]), Buffer.from(txt)]));
    assert.deepEqual(mx!.rdata, Buffer.concat([Buffer.from([0, 1]), lower]));
  }), { numRuns: 1000 });
});

test('TTL syntax', () => {
  assert.equal(parseTtl('0'), 0);
  assert.equal(parseTtl('1h30m'), 5400);
  assert.equal(parseTtl('1W'), 604800);
  assert.equal(parseTtl('2d1S'), 172801);
  for (const t of ['', 'h', '1x', '1h30', '-1', '1.5h', '1 h']) assert.equal(parseTtl(t), null, t);
});

test('parseIPv6 agrees with ip-address on random addresses and refuses what node:net refuses', () => {
  fc.assert(fc.property(fc.ipV6(), (a) => {
    const mine = parseIPv6(a);
    const theirs = parseIp(a);
    assert.ok(mine !== null && theirs !== null, a);
    const full = theirs.length === 4 ? Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), theirs]) : Buffer.from(theirs);
    assert.deepEqual(Buffer.from(mine), full, a);
  }), { numRuns: 2000 });
  for (const bad of ['1:2:3:4:5:6:7:8:9', ':1', '1:', '1:::2', '1::2::3', 'g::', '12345::', '1.2.3.4', '::ffff:1.2.3', '::01.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', 'fe80::1%eth0', ':::']) {
    assert.equal(parseIPv6(bad), null, bad);
  }
});

// nsd-checkzone is an independent reader of the same files: it must accept every valid fixture
// and, printing the zone back (-p), give the same records. nottl.zone is checked for acceptance
// only: with no $TTL, nsd uses 3600 where BIND and this parser use the SOA minimum and the
// previous TTL.
const NSD = '/usr/sbin/nsd-checkzone';
test('nsd-checkzone reads the valid fixtures to the same records', { skip: !existsSync(NSD) && 'nsd-checkzone is not installed' }, () => {
  const dir = join(ZONES, 'valid');
  const tmp = mkdtempSync(join(tmpdir(), 'zonefile-nsd-'));
  try {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.zone'))) {
      const ours = ok(`valid/${f}`);
      const apex = ours.find((r) => r.type === QType.SOA)!.name;
      const printed = execFileSync(NSD, ['-p', apex, f], { cwd: dir, encoding: 'latin1' });
      assert.match(printed, new RegExp(`; zone ${apex.replace(/\./g, '\\.')} is ok`), f);
      if (f === 'nottl.zone') continue;
      const out = join(tmp, f);
      writeFileSync(out, printed, 'latin1');
      const back = parseZoneFile(out);
      assert.deepEqual(errors(back), [], f);
      assert.deepEqual(back.records.map(show).sort(), ours.map(show).sort(), f);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
