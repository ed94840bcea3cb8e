// The zones stage on real loopback sockets: AA and the SOA of negative answers, RFC 4592
// wildcards, CNAMEs, delegations and other names going on to a TestUpstream, views by line,
// loader errors at file:line:col, reload; and the same 34 questions asked of nsd and of linedns.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { ConfigError, formatIssue } from '../../src/config/load.js';
import { loadConfig } from '../../src/app/config.js';
import { udpExchange } from '../helpers/client.js';
import { aRecords, mustParse, rawQuery, type CheckedMessage } from '../helpers/packets.js';
import { findBinary, startNsd } from '../helpers/peers.js';
import { writeConfig } from '../helpers/server.js';
import { withRig, PUBLIC, type Rig } from '../helpers/split.js';
import { ZoneSet } from '../../src/stages/zones/store.js';
import { NO_LINES } from '../../src/core/views.js';

const CLI = new URL('../../src/cli.js', import.meta.url).pathname;

const T = { timeout: 60_000 };
const AA = 0x0400;
const A = 1;
const NS = 2;
const CNAME = 5;
const MX = 15;
const TXT = 16;
const AAAA = 28;
const SRV = 33;
const DS = 43;

/**
 * RFC 4592 section 2.2.1's zone, with CNAMEs, an empty non-terminal and a delegation added.
 * SOA TTL 3600, MINIMUM 300: negative answers carry the SOA with TTL 300.
 */
export const EXAMPLE_ZONE = `$ORIGIN example.
$TTL 3600
@        IN SOA ns.example.com. hostmaster.example. 2024010101 7200 3600 1209600 300
@        NS    ns.example.com.
@        NS    ns.example.net.
@        A     192.0.2.80
@        MX    10 host1
*        TXT   "this is a wildcard"
*        MX    10 host1.example.
sub.*    TXT   "this is not a wildcard"
host1    A     192.0.2.1
host1    AAAA  2001:db8::1
_ssh._tcp.host1 SRV 0 5 22 host1
_ssh._tcp.host2 SRV 0 5 22 host2
subdel   NS    ns.example.com.
subdel   NS    ns.example.net.
www      600 CNAME host1
alias    CNAME www
out      CNAME target.elsewhere.test.
dangling CNAME nothere.host1
hidden   CNAME missing
*.apps   CNAME host1
txt      TXT   "v=spf1 -all" "two"
loop1    CNAME loop2
loop2    CNAME loop1
olddom   DNAME example.
ext      300 DNAME other.test.
`;

const PIPELINE = ['decode', 'cache', 'records', 'zones', 'smartline', 'forward'];

let nextId = 900;

async function ask(port: number, name: string, type: number, from = '127.0.0.1'): Promise<CheckedMessage> {
  const id = nextId++ & 0xffff;
  const m = mustParse(await udpExchange(port, rawQuery(name, type, { id }), { from, timeoutMs: 3000 }), `reply for ${name}`);
  assert.equal(m.id, id);
  return m;
}

/** A section as "owner TYPE TTL", sorted: order is not part of the answer. */
function section(m: CheckedMessage, s: 0 | 1 | 2): string[] {
  return m.records.filter((r) => r.section === s).map((r) => `${r.owner} ${r.type} ${r.ttl}`).sort();
}

function withZones(zones: Record<string, string>, config: Record<string, unknown>, body: (rig: Rig) => Promise<void>, smartLine?: Record<string, string[]>): Promise<void> {
  return withRig({ extra: zones, smartLine, config: { pipeline: PIPELINE, answerMemo: false, ...config } }, body);
}

describe('answers from a zone', T, () => {
  test('positive answers carry AA and no authority; the client spelling is kept', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const m = await ask(rig.ld.port, 'HoSt1.Example', A);
      assert.ok(m.flags & AA);
      assert.equal(m.rcode, 0);
      assert.deepEqual(aRecords(m), ['host1.example 192.0.2.1']);
      // The parser above lower-cases; the octets keep the client's spelling, once (the owner points at it).
      const raw = await udpExchange(rig.ld.port, rawQuery('HoSt1.Example', A, { id: 1 }), { timeoutMs: 3000 });
      assert.equal(raw!.toString('latin1').split('HoSt1').length - 1, 1);
      assert.equal(raw!.toString('latin1').split('host1').length - 1, 0);
      assert.deepEqual(section(m, 1), []);
      assert.deepEqual(section(await ask(rig.ld.port, 'example', NS), 0), ['example 2 3600', 'example 2 3600']);
      assert.deepEqual(section(await ask(rig.ld.port, 'txt.example', TXT), 0), ['txt.example 16 3600']);
      assert.equal(rig.metric('zones_answered_total'), 3);
      assert.equal(rig.up.requests.length, 0);
    });
  });

  test('NXDOMAIN and NODATA carry the SOA in authority with min(SOA TTL, MINIMUM); empty non-terminals are NODATA', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const nx = await ask(rig.ld.port, 'nope.host1.example', A);
      assert.equal(nx.rcode, 3);
      assert.ok(nx.flags & AA);
      assert.deepEqual(section(nx, 0), []);
      assert.deepEqual(section(nx, 1), ['example 6 300']);
      const nodata = await ask(rig.ld.port, 'host1.example', TXT);
      assert.equal(nodata.rcode, 0);
      assert.ok(nodata.flags & AA);
      assert.deepEqual(section(nodata, 0), []);
      assert.deepEqual(section(nodata, 1), ['example 6 300']);
      const ent = await ask(rig.ld.port, '_tcp.host1.example', A);
      assert.equal(ent.rcode, 0, 'an empty non-terminal exists');
      assert.deepEqual(section(ent, 1), ['example 6 300']);
      assert.equal(rig.metric('zones_nxdomain_total'), 1);
      assert.equal(rig.metric('zones_nodata_total'), 2);
    });
  });

  test('RFC 4592 section 2.2.1: which names the wildcards match', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const p = rig.ld.port;
      // Synthesised: the owner is the question.
      const mx = await ask(p, 'host3.example', MX);
      assert.deepEqual([mx.rcode, section(mx, 0)], [0, ['host3.example 15 3600']]);
      const deep = await ask(p, 'foo.bar.example', TXT);
      assert.deepEqual([deep.rcode, section(deep, 0)], [0, ['foo.bar.example 16 3600']]);
      // The wildcard owns the name but not the type: NODATA.
      const a = await ask(p, 'host3.example', A);
      assert.deepEqual([a.rcode, section(a, 0), section(a, 1)], [0, [], ['example 6 300']]);
      // The name exists: no synthesis.
      assert.deepEqual(section(await ask(p, 'host1.example', MX), 0), []);
      assert.deepEqual(section(await ask(p, 'sub.*.example', MX), 1), ['example 6 300']);
      // Closer encloser exists (host1.example, _tcp.host2.example, *.example): NXDOMAIN.
      for (const name of ['_telnet._tcp.host1.example', '_dns._udp.host2.example', 'ghost.*.example']) {
        const r = await ask(p, name, TXT);
        assert.deepEqual([r.rcode, section(r, 0)], [3, []], name);
      }
      // An empty non-terminal stops the wildcard: _tcp.host1 exists.
      assert.equal((await ask(p, '_tcp.host1.example', TXT)).rcode, 0);
      // Asked for the wildcard itself: its own data.
      assert.deepEqual(section(await ask(p, '*.example', TXT), 0), ['*.example 16 3600']);
    });
  });

  test('CNAMEs: followed inside the zone; a target outside it, or missing, ends the chain; a wildcard CNAME; a loop', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const p = rig.ld.port;
      const chain = await ask(p, 'alias.example', A);
      assert.deepEqual([chain.rcode, section(chain, 0)], [0, ['alias.example 5 3600', 'host1.example 1 3600', 'www.example 5 600']]);
      const out = await ask(p, 'out.example', A);
      assert.deepEqual([out.rcode, section(out, 0), section(out, 1)], [0, ['out.example 5 3600'], []], 'the resolver goes on from the target');
      assert.equal(rig.up.requests.length, 0, 'linedns does not chase it');
      const dangling = await ask(p, 'dangling.example', A);
      assert.deepEqual([dangling.rcode, section(dangling, 0), section(dangling, 1)], [3, ['dangling.example 5 3600'], ['example 6 300']], 'RFC 6604: the rcode of the last name');
      // missing.example does not exist, but *.example has data: NODATA for A.
      const hidden = await ask(p, 'hidden.example', A);
      assert.deepEqual([hidden.rcode, section(hidden, 0), section(hidden, 1)], [0, ['hidden.example 5 3600'], ['example 6 300']]);
      const wild = await ask(p, 'x.y.apps.example', AAAA);
      assert.deepEqual(section(wild, 0), ['host1.example 28 3600', 'x.y.apps.example 5 3600']);
      assert.deepEqual(section(await ask(p, 'www.example', CNAME), 0), ['www.example 5 600'], 'asked for the CNAME itself');
      const loop = await ask(p, 'loop1.example', A);
      assert.deepEqual([loop.rcode, section(loop, 0)], [0, ['loop1.example 5 3600', 'loop2.example 5 3600']], 'a loop stops at the first repeat');
    });
  });

  test('DNAME (RFC 6672): the DNAME and a synthesized CNAME, followed inside the zone; the owner itself is not redirected; too long a result is YXDOMAIN', async () => {
    const long = `${'l'.repeat(60)}.${'m'.repeat(60)}.${'n'.repeat(60)}.`;
    const zone = `${EXAMPLE_ZONE}far DNAME ${long}\n`;
    await withZones({ 'example.zone': zone }, { zones: ['example.zone'] }, async (rig) => {
      const p = rig.ld.port;
      const a = await ask(p, 'host1.olddom.example', A);
      assert.equal(a.rcode, 0);
      assert.ok(a.flags & AA);
      assert.deepEqual(section(a, 0), ['host1.example 1 3600', 'host1.olddom.example 5 3600', 'olddom.example 39 3600']);
      // Out of the zone: the chain stops at the synthesized CNAME, whose TTL is the DNAME's.
      assert.deepEqual(section(await ask(p, 'a.b.ext.example', A), 0), ['a.b.ext.example 5 300', 'ext.example 39 300']);
      // The owner keeps its own data: NODATA for A.
      const owner = await ask(p, 'olddom.example', A);
      assert.deepEqual([owner.rcode, section(owner, 0), section(owner, 1)], [0, [], ['example 6 300']]);
      // 63 + 1 + 183 + 1 octets and more: beyond 255 once substituted.
      const tooLong = await ask(p, `${'x'.repeat(63)}.${'y'.repeat(10)}.far.example`, A);
      assert.equal(tooLong.rcode, 6, 'YXDOMAIN');
      assert.deepEqual(section(tooLong, 0), ['far.example 39 3600']);
      assert.equal(rig.up.requests.length, 0);
    });
  });

  test('a delegation (NS below the apex) goes on to the next stage; DS at the cut is the parent zone\'s; names outside every zone go on', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const p = rig.ld.port;
      for (const name of ['host.subdel.example', 'subdel.example', 'a.b.subdel.example']) {
        const m = await ask(p, name, A);
        assert.deepEqual(aRecords(m), [`${name} ${PUBLIC}`], name);
        assert.equal(m.flags & AA, 0, 'the upstream answered');
      }
      assert.equal(rig.metric('zones_fallthrough_total'), 3);
      const ds = await ask(p, 'subdel.example', DS);
      assert.deepEqual([ds.rcode, ds.flags & AA, section(ds, 1)], [0, AA, ['example 6 300']]);
      assert.deepEqual(aRecords(await ask(p, 'www.elsewhere.test', A)), [`www.elsewhere.test ${PUBLIC}`]);
      assert.equal(rig.up.requests.length, 4);
      assert.equal(rig.metric('zones_fallthrough_total'), 3, 'a name in no zone is not counted');
    });
  });

  test('"origin" in linedns.json: relative names without $ORIGIN, two zones, the closest one answers', async () => {
    const corp = '@ 60 IN SOA ns hostmaster 1 7200 3600 1209600 30\n@ NS ns\nns A 192.0.2.53\nwww 120 A 192.0.2.10\n';
    await withZones({ 'example.zone': EXAMPLE_ZONE, 'corp.zone': corp }, { zones: ['example.zone', { file: 'corp.zone', origin: 'Corp.Example.' }] }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'www.corp.example', A)), ['www.corp.example 192.0.2.10']);
      assert.deepEqual(section(await ask(rig.ld.port, 'nope.corp.example', A), 1), ['corp.example 6 30'], 'the SOA of the closest zone, min(60, 30)');
      assert.deepEqual(section(await ask(rig.ld.port, 'corp2.example', MX), 0), ['corp2.example 15 3600'], 'the parent zone\'s wildcard');
    });
  });

  test('other classes go on; SRV and AAAA answer', async () => {
    await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
      const ch = mustParse(await udpExchange(rig.ld.port, rawQuery('host1.example', TXT, { id: 5, klass: 3 }), { timeoutMs: 3000 }));
      assert.equal(ch.flags & AA, 0);
      assert.deepEqual(section(await ask(rig.ld.port, '_ssh._tcp.host1.example', SRV), 0), ['_ssh._tcp.host1.example 33 3600']);
      assert.deepEqual(section(await ask(rig.ld.port, 'host1.example', AAAA), 0), ['host1.example 28 3600']);
    });
  });
});

// -------------------------------------------------------------------------------------------
// Views

const LINES = { office: ['127.0.0.2/32'], guest: ['127.0.0.3/32'] };
const PUBLIC_CORP = '$ORIGIN corp.example.\n@ 300 IN SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nns A 192.0.2.53\nwww A 192.0.2.10\n';
const OFFICE_CORP = '$ORIGIN corp.example.\n@ 300 IN SOA ns hostmaster 2 7200 3600 1209600 60\n@ NS ns\nns A 10.0.0.53\nwww A 10.0.0.10\nintranet A 10.0.0.11\n';
const OFFICE_ONLY = '$ORIGIN secret.example.\n@ 300 IN SOA ns hostmaster 1 7200 3600 1209600 60\n@ NS ns\nvault A 10.0.0.99\n';

describe('labelled zones are views', T, () => {
  const files = { 'corp.zone': PUBLIC_CORP, 'office.zone': OFFICE_CORP, 'secret.zone': OFFICE_ONLY };
  const zones = ['corp.zone', { file: 'office.zone', labels: ['office'] }, { file: 'secret.zone', labels: ['office'] }];

  const orders: [string, string[]][] = [
    ['cache first', PIPELINE],
    ['smartline before zones, no cache', ['decode', 'smartline', 'zones', 'forward']],
  ];
  for (const [what, pipeline] of orders) {
    test(`each line sees its zone, the others the unlabelled one or the upstream (${what}), asked in both orders`, async () => {
      await withZones(files, { zones, pipeline }, async (rig) => {
        const p = rig.ld.port;
        for (let round = 0; round < 2; round++) {
          const order = round === 0 ? ['127.0.0.2', '127.0.0.3'] : ['127.0.0.3', '127.0.0.2'];
          for (const from of order) {
            const office = from === '127.0.0.2';
            assert.deepEqual(aRecords(await ask(p, 'www.corp.example', A, from)), [`www.corp.example ${office ? '10.0.0.10' : '192.0.2.10'}`], `www from ${from}`);
            const intranet = await ask(p, 'intranet.corp.example', A, from);
            assert.equal(intranet.rcode, office ? 0 : 3, `intranet from ${from}`);
            assert.ok(intranet.flags & AA);
            assert.deepEqual(aRecords(await ask(p, 'vault.secret.example', A, from)), [`vault.secret.example ${office ? '10.0.0.99' : PUBLIC}`], `vault from ${from}`);
          }
        }
        assert.equal(rig.up.requests.length, pipeline.includes('cache') ? 1 : 2, 'the hidden zone\'s name went upstream (once with the cache)');
      }, LINES);
    });
  }

  test('a client in no line sees only unlabelled zones (smartLineUnmatched does not apply to zones)', async () => {
    await withZones(files, { zones, smartLineUnmatched: 'all' }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'www.corp.example', A, '127.0.0.9')), ['www.corp.example 192.0.2.10']);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'vault.secret.example', A, '127.0.0.9')), [`vault.secret.example ${PUBLIC}`]);
      assert.equal(rig.metric('zones_fallthrough_total'), 1);
    }, LINES);
  });

  test('labelled zones and no stage providing the view: refused at the zones entry, with the reason', () => {
    const { configFile } = writeConfig({ extra: files, config: { upstreams: ['127.0.0.1:9'], zones, pipeline: ['decode', 'zones', 'forward'] } });
    assert.throws(
      () => loadConfig(configFile),
      (err: unknown) =>
        err instanceof ConfigError &&
        /linedns\.json:\d+:\d+: error: \$\.pipeline\[1\]: "zones" needs "view" from a stage in the pipeline: zone "corp\.example" \(.*office\.zone\) is labelled "office", .*no client would ever see it/.test(err.issues.map(formatIssue).join('\n')),
    );
  });
});

// -------------------------------------------------------------------------------------------
// The loader

/** The formatted errors (and warnings) of loading `zones` with these files. */
function loadIssues(files: Record<string, string>, zones: unknown[], extra: Record<string, unknown> = {}): string[] {
  const { configFile } = writeConfig({ extra: files, config: { upstreams: ['127.0.0.1:9'], zones, pipeline: ['decode', 'zones', 'forward'], ...extra } });
  try {
    const { warnings } = loadConfig(configFile);
    return warnings.map(formatIssue);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map(formatIssue);
  }
}

describe('the loader checks zones, each problem at file:line:col', T, () => {
  const SOA_LINE = '@ 3600 IN SOA ns hostmaster 1 7200 3600 1209600 300\n';

  test('a bad record: the parser\'s message at its token', () => {
    const issues = loadIssues({ 'a.zone': `$ORIGIN a.test.\n${SOA_LINE}www  A  300.1.1.1\n` }, ['a.zone']);
    assert.equal(issues.length, 1, issues.join('\n'));
    assert.match(issues[0]!, /a\.zone:3:9: error: \$: expected an IPv4 address such as 192\.0\.2\.1, not "300\.1\.1\.1" \[LDNS_ZONE_SYNTAX\]$/);
  });

  test('a missing SOA, with and without an origin', () => {
    assert.match(loadIssues({ 'b.zone': 'www.b.test. 60 A 192.0.2.1\n' }, ['b.zone']).join('\n'), /b\.zone:1:1: error: \$: no SOA record, so the zone has no apex: expected one at the origin/);
    assert.match(loadIssues({ 'b.zone': 'www 60 A 192.0.2.1\n' }, [{ file: 'b.zone', origin: 'b.test' }]).join('\n'), /b\.zone:1:1: error: \$: no SOA record at the apex "b\.test": expected one, e\.g\./);
  });

  test('data outside the origin, an SOA below the apex, a CNAME beside other data', () => {
    const text = `$ORIGIN c.test.\n${SOA_LINE}x.other.test. A 192.0.2.1\nsub SOA ns hostmaster 1 1 1 1 1\nwww CNAME host\nwww A 192.0.2.2\n`;
    const issues = loadIssues({ 'c.zone': text }, ['c.zone']).join('\n');
    assert.match(issues, /c\.zone:3:1: error: \$: "x\.other\.test" is outside the zone "c\.test": expected names at or below the origin/);
    assert.match(issues, /c\.zone:4:1: error: \$: an SOA at "sub\.c\.test", below the apex/);
    assert.match(issues, /c\.zone:6:1: error: \$: A data at "www\.c\.test", which has a CNAME at 5:1: expected a CNAME alone at its owner/);
  });

  test('at linedns.json: a missing file, a bad origin, two unlabelled zones for one apex; labels naming no line warn', () => {
    const ok = `$ORIGIN d.test.\n${SOA_LINE}`;
    const lines = JSON.stringify({ office: ['127.0.0.2/32'] });
    const issues = loadIssues({ 'd.zone': ok, 'd2.zone': ok, 'lines.json': lines }, ['missing.zone', { file: 'd.zone', origin: 'bad..name' }, 'd.zone', 'd2.zone', { file: 'd.zone', labels: ['nowhere'] }], { smartLine: 'lines.json', pipeline: ['decode', 'zones', 'smartline', 'forward'] });
    const text = issues.join('\n');
    assert.match(text, /linedns\.json:\d+:\d+: error: \$\.zones\[0\]: cannot read zone file .*missing\.zone: no such file/);
    assert.match(text, /\$\.zones\[1\]\.origin: "bad\.\.name" has an empty label/);
    assert.match(text, /\$\.zones\[3\]: a second zone for "d\.test" without labels \(zones\[2\] is one\)/);
    assert.match(text, /warning: \$\.zones\[4\]\.labels\[0\]: label "nowhere" is not a line in smart-line\.json: no client will see this zone/);
  });

  test('a labelled zone whose file has errors, and no view in the pipeline: both in one run', () => {
    const issues = loadIssues({ 'v.zone': 'www 60 A 192.0.2.1\n' }, [{ file: 'v.zone', origin: 'v.test', labels: ['office'] }]).join('\n');
    assert.match(issues, /v\.zone:1:1: error: \$: no SOA record at the apex "v\.test"/);
    assert.match(issues, /error: \$\.pipeline\[1\]: "zones" needs "view" from a stage in the pipeline: zone "v\.test"/);
  });

  test('"zones" set while the zones stage is not in the pipeline: a warning', () => {
    const issues = loadIssues({ 'w.zone': `$ORIGIN w.test.\n${SOA_LINE}` }, ['w.zone'], { pipeline: ['decode', 'forward'] });
    assert.equal(issues.length, 1, issues.join('\n'));
    assert.match(issues[0]!, /warning: \$\.zones: "zones" is set but the "zones" stage is not in the pipeline, so it has no effect/);
  });

  test('every error of every file in one run, sorted by file then line', () => {
    const issues = loadIssues({ 'e.zone': `$ORIGIN e.test.\n${SOA_LINE}a A x\nb MX y z\n`, 'f.zone': 'g.test. 60 A 192.0.2.1\n' }, ['e.zone', 'f.zone']);
    assert.equal(issues.filter((i) => i.includes(': error: ')).length, 3, issues.join('\n'));
    assert.match(issues[0]!, /e\.zone:3:/);
    assert.match(issues[1]!, /e\.zone:4:/);
  });
});

test('`linedns check` lists the zone errors with every other error of the configuration, exit 1', () => {
  const { configFile } = writeConfig({
    extra: { 'z.zone': '$ORIGIN z.test.\n@ 60 IN SOA ns hostmaster 1 1 1 1 1\nwww A nowhere\n' },
    config: { upstreams: ['127.0.0.1:9'], zones: ['z.zone'], pipeline: ['decode', 'zones', 'forward'], maxUdpSize: 5 },
  });
  const r = spawnSync(process.execPath, [CLI, 'check', configFile], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1, r.stdout + r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /linedns\.json:\d+:\d+: error: \$\.maxUdpSize: /);
  assert.match(out, /z\.zone:3:7: error: \$: expected an IPv4 address such as 192\.0\.2\.1, not "nowhere"/);
});

test('under --workers the configuration reaches a worker as JSON (RDATA as {type, data}): the zones answer the same', () => {
  const { configFile } = writeConfig({ extra: { 'example.zone': EXAMPLE_ZONE }, config: { upstreams: ['127.0.0.1:9'], zones: ['example.zone'], pipeline: ['decode', 'zones', 'forward'] } });
  const zones = loadConfig(configFile).config.zones;
  const direct = new ZoneSet(zones);
  const viaJson = new ZoneSet(JSON.parse(JSON.stringify(zones)) as typeof zones);
  const client = { lines: NO_LINES };
  for (const [name, type] of [['host1.example', A], ['alias.example', AAAA], ['host3.example', MX], ['nope.example', A], ['host.subdel.example', A]] as const) {
    const a = direct.find(name, client).zone!.lookup(name, type);
    const b = viaJson.find(name, client).zone!.lookup(name, type);
    assert.deepEqual(b, a, `${name} ${type}`);
  }
});

describe('reload', T, () => {
  test('a reload re-reads the zone files: a changed answer applies at once, even one the cache holds; a bad zone keeps the last good one', async () => {
    const v1 = `$ORIGIN r.test.\n@ 60 IN SOA ns hostmaster 1 7200 3600 1209600 60\nwww 60 A 192.0.2.1\n`;
    await withZones({ 'r.zone': v1 }, { zones: ['r.zone'], answerMemo: true }, async (rig) => {
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'www.r.test', A)), ['www.r.test 192.0.2.1']);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'WWW.r.test', A)), ['www.r.test 192.0.2.1']);
      assert.equal(rig.metric('cache_hits_total'), 1, 'the cache holds it');
      writeFileSync(join(rig.ld.dir, 'r.zone'), v1.replace('192.0.2.1', '192.0.2.2').replace('hostmaster 1', 'hostmaster 2'));
      assert.equal(await rig.ld.server.reloadFromFile(), true);
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'www.r.test', A)), ['www.r.test 192.0.2.2']);
      writeFileSync(join(rig.ld.dir, 'r.zone'), 'www 60 A 192.0.2.3\n');
      assert.equal(await rig.ld.server.reloadFromFile(), false, 'a zone without an SOA is refused');
      assert.deepEqual(aRecords(await ask(rig.ld.port, 'www.r.test', A)), ['www.r.test 192.0.2.2']);
    });
  });
});

// -------------------------------------------------------------------------------------------
// nsd, an independent authoritative server, serving the same file

const NSD = findBinary('nsd');

/** The 34 questions, with what linedns does differently by design (compared: nothing or less). */
const QUESTIONS: { name: string; type: string; differs?: 'delegation' }[] = [
  { name: 'example', type: 'SOA' },
  { name: 'example', type: 'NS' },
  { name: 'example', type: 'A' },
  { name: 'example', type: 'MX' },
  { name: 'host1.example', type: 'A' },
  { name: 'HOST1.example', type: 'AAAA' },
  { name: 'host1.example', type: 'MX' },
  { name: 'txt.example', type: 'TXT' },
  { name: '_ssh._tcp.host1.example', type: 'SRV' },
  { name: 'nope.example', type: 'TXT' },
  { name: 'a.b.host1.example', type: 'A' },
  { name: '_tcp.host1.example', type: 'A' },
  { name: '_tcp.host2.example', type: 'SRV' },
  { name: 'host3.example', type: 'MX' },
  { name: 'host3.example', type: 'A' },
  { name: 'foo.bar.example', type: 'TXT' },
  { name: 'sub.*.example', type: 'MX' },
  { name: 'ghost.*.example', type: 'MX' },
  { name: '_telnet._tcp.host1.example', type: 'SRV' },
  { name: '*.example', type: 'TXT' },
  { name: 'www.example', type: 'A' },
  { name: 'www.example', type: 'CNAME' },
  { name: 'alias.example', type: 'AAAA' },
  { name: 'out.example', type: 'A' },
  { name: 'q.apps.example', type: 'A' },
  { name: 'dangling.example', type: 'A' },
  { name: 'hidden.example', type: 'A' },
  { name: 'subdel.example', type: 'DS' },
  { name: 'host1.olddom.example', type: 'A' },
  { name: 'x.y.ext.example', type: 'AAAA' },
  { name: 'olddom.example', type: 'DNAME' },
  { name: 'olddom.example', type: 'A' },
  { name: 'host.subdel.example', type: 'A', differs: 'delegation' },
  { name: 'subdel.example', type: 'NS', differs: 'delegation' },
];

interface Seen {
  rcode: string;
  aa: boolean;
  answer: string[];
  authority: string[];
}

/** A reply as compared: rcode, AA, and both sections as sorted "owner TTL TYPE data" lines. */
function seen(buf: Buffer): Seen {
  const p = dnsPacket.decode(buf) as dnsPacket.DecodedPacket & { rcode?: string };
  const line = (r: dnsPacket.Answer): string => `${r.name.toLowerCase()} ${'ttl' in r ? r.ttl : ''} ${r.type} ${JSON.stringify('data' in r ? r.data : null)}`;
  return {
    rcode: p.rcode ?? 'NOERROR',
    aa: ((p.flags ?? 0) & AA) !== 0,
    answer: (p.answers ?? []).map(line).sort(),
    authority: (p.authorities ?? []).map(line).sort(),
  };
}

describe('the same questions of nsd and linedns', { ...T, skip: NSD === null ? 'nsd not installed (Debian: apt-get install nsd)' : false }, () => {
  test(`${QUESTIONS.length} questions: rcode, AA, answer and authority match nsd's (minimal-responses), except where linedns differs by design`, async () => {
    assert.equal(QUESTIONS.length, 34);
    // minimal-responses: nsd then leaves the zone's NS out of the authority of positive answers,
    // as linedns does (the NS RRset of the apex is no part of an answer: RFC 2181 6.1).
    const nsd = await startNsd([{ origin: 'example', text: EXAMPLE_ZONE }], ['minimal-responses: yes']);
    try {
      await withZones({ 'example.zone': EXAMPLE_ZONE }, { zones: ['example.zone'] }, async (rig) => {
        let same = 0;
        for (const q of QUESTIONS) {
          const query = dnsPacket.encode({ type: 'query', id: 77, flags: 0, questions: [{ name: q.name, type: q.type as dnsPacket.RecordType, class: 'IN' }] });
          const fromNsd = await udpExchange(nsd.port, query, { timeoutMs: 3000 });
          const fromLd = await udpExchange(rig.ld.port, query, { timeoutMs: 3000 });
          assert.ok(fromNsd !== null && fromLd !== null, `${q.name} ${q.type}: no reply`);
          const n = seen(fromNsd);
          const l = seen(fromLd);
          const what = `${q.name} ${q.type}`;
          if (q.differs === 'delegation') {
            // nsd refers (no AA, the cut's NS in authority); linedns is no referring server:
            // the name is another server's, so it asks its upstream (here the rig's, PUBLIC).
            assert.deepEqual([n.aa, n.authority.every((r) => / NS /.test(r))], [false, true], `${what}: nsd's referral`);
            assert.equal(l.aa, false, `${what}: linedns passed it on`);
            continue;
          }
          assert.deepEqual(l, n, what);
          same++;
        }
        assert.equal(same, 32);
      });
    } finally {
      await nsd.stop();
    }
  });
});
