// Off-path spoofing: the flood attack that poisoned linedns's two-port pool, replayed against the
// port pool and 0x20; and how many source ports 500 upstream queries really use.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { Metrics } from '../src/lib/metrics.js';
import { DEFAULT_UDP_OPTIONS, UdpExchange } from '../src/stages/forward/udp.js';
import { bounded, startLineDns } from './helpers/server.js';
import { TestUpstream } from './helpers/upstream.js';
import { udpExchange } from './helpers/client.js';
import { aRecords, checkMessage, header, ipv4, mustParse, QNAME_PTR, QR, question, RA, rawQuery, RD, replyTo, rr } from './helpers/packets.js';

/** The attacked upstream's own loopback address (see UP_HOST in hostile-upstream.test.ts). */
const UP_HOST = '127.0.0.73';
const EVIL = '6.6.6.6';
const GOOD = '192.0.2.10';
/** The real answer goes this long after the forged flood has been sent. */
const REAL_DELAY_MS = 50;
/** Forged replies per event-loop turn: fewer than the 32 datagrams libuv reads per socket per turn, so no receive buffer overflows and drops the one that matters. */
const BATCH = 16;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** No flood starts or goes on after this: the whole file's flooding fits in 50 s. */
const FLOODS_END = performance.now() + 50_000;

type Knowledge = 'learned' | 'real';

/**
 * An upstream under attack. For each A query it lets an off-path attacker flood forged replies
 * for the question (lower case, as the attacker knows the name but not a 0x20 spelling) with
 * every ID, 0..65535, at one port, then answers for real REAL_DELAY_MS after the last forgery.
 * The forgeries leave from the upstream's own socket: a perfect source address forgery, which
 * an off-path attacker gets from any network without egress filtering.
 * The port attacked is what the attacker knows:
 * - 'learned': the source port of the previous upstream query (as the attacker in the issue
 *   learned the two pooled ports, e.g. from queries it triggered to a server it watches);
 * - 'real': the query's own port, which no off-path attacker sees (for the 0x20 test).
 */
class AttackedUpstream {
  readonly seenPorts: number[] = [];
  forged = 0;
  attack = true;
  /** The flood in progress: the next query waits for it, so no flood spills into another. */
  private flooding: Promise<void> = Promise.resolve();
  private constructor(
    readonly socket: dgram.Socket,
    readonly port: number,
    private readonly knowledge: Knowledge,
  ) {}

  static async start(knowledge: Knowledge): Promise<AttackedUpstream> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, UP_HOST, r));
    const up = new AttackedUpstream(socket, socket.address().port, knowledge);
    socket.on('message', (raw, rinfo) => void up.onQuery(raw, rinfo));
    return up;
  }

  private async onQuery(raw: Buffer, rinfo: dgram.RemoteInfo): Promise<void> {
    const m = checkMessage(raw);
    if (typeof m === 'string' || m.qname === null) return;
    const target = this.knowledge === 'real' ? rinfo.port : this.seenPorts.at(-1);
    this.seenPorts.push(rinfo.port);
    if (m.qtype !== 1) {
      // The forward stage's loop probe: NXDOMAIN, as a resolver answers .invalid.
      this.socket.send(replyTo(raw, { rcode: 3 }), rinfo.port, rinfo.address);
      return;
    }
    if (this.attack && target !== undefined) {
      this.flooding = this.flood(m.qname, rinfo.address, target);
      await this.flooding;
    }
    this.socket.send(replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(GOOD))] }), rinfo.port, rinfo.address);
  }

  private async flood(qname: string, address: string, port: number): Promise<void> {
    const forged = Buffer.concat([header({ flags: QR | RD | RA, qd: 1, an: 1 }), question(qname.toLowerCase()), rr(QNAME_PTR, 1, 1, 86_400, ipv4(EVIL))]);
    // Bounded: 65,536 datagrams per attacked query (32 queries in this file), at most 20 s per
    // flood and none after FLOODS_END.
    const end = Math.min(performance.now() + 20_000, FLOODS_END);
    for (let id = 0; id < 0x10000 && performance.now() < end; id += BATCH) {
      for (let k = id; k < Math.min(id + BATCH, 0x10000); k++) {
        const b = Buffer.from(forged);
        b.writeUInt16BE(k, 0);
        this.socket.send(b, port, address);
        this.forged++;
      }
      await new Promise((r) => setImmediate(r));
    }
    await sleep(REAL_DELAY_MS);
  }

  /** Resolves once the current flood (and the real answer after it) has been sent. */
  quiet(): Promise<void> {
    return this.flooding;
  }

  async close(): Promise<void> {
    await this.quiet();
    await new Promise<void>((r) => this.socket.close(() => r()));
  }
}

interface Outcome {
  name: string;
  /** Addresses the client (or the exchange's caller) was given; empty for SERVFAIL. */
  answer: string[];
  /** What a second query got: from the cache when the first was cached. */
  cached: string[];
}

const poisoned = (o: Outcome): boolean => o.answer.some((a) => a.endsWith(EVIL)) || o.cached.some((a) => a.endsWith(EVIL));

/** Names long in letters, so that a 0x20 spelling equal to the attacker's lower case is a 2^-25 event. */
const victim = (i: number): string => `victim-${i}.poison-target.example`;

/** Attacks `count` names through a linedns forwarding to an attacked upstream. */
async function attackLineDns(knowledge: Knowledge, count: number, forward: Record<string, unknown> = {}): Promise<{ outcomes: Outcome[]; forged: number; ports: number[]; heard: number }> {
  const up = await AttackedUpstream.start(knowledge);
  const ld = await startLineDns({ config: { upstreams: [`${UP_HOST}:${up.port}`], forward: { timeout: 8000, deadline: 10_000, ...forward } } });
  const ask = async (name: string): Promise<string[]> => {
    const m = mustParse(await udpExchange(ld.port, rawQuery(name, 1, { id: 7 }), { timeoutMs: 12_000 }), name);
    return aRecords(m).map((a) => a.split(' ')[1]!);
  };
  try {
    // A first query, not attacked, so the attacker has a port to learn.
    up.attack = false;
    await ask('warm-up.poison-target.example');
    const outcomes: Outcome[] = [];
    for (let i = 0; i < count; i++) {
      up.attack = true;
      const answer = await ask(victim(i));
      up.attack = false;
      await up.quiet();
      outcomes.push({ name: victim(i), answer, cached: await ask(victim(i)) });
    }
    // Forgeries that reached an upstream socket of linedns (rather than a closed port).
    const heard = ['upstream_replies_ignored_total', 'upstream_replies_unusable_total'].reduce((n, k) => n + ld.server.metrics.get(k), 0);
    return { outcomes, forged: up.forged, ports: up.seenPorts, heard };
  } finally {
    await bounded(ld.close(), 'linedns');
    await up.close();
  }
}

describe('off-path spoofing: the flood that poisoned the two-port pool', { timeout: 60_000 }, () => {
  test('the attack works: an exchange with a single port is poisoned', async (t) => {
    // The same attack against a deliberately tiny pool (one port, never replaced): the attacker
    // learns the port from one query and owns every later one. This is what makes the tests
    // below able to fail: were linedns's pool predictable again, they would see the poison.
    const up = await AttackedUpstream.start('learned');
    const ex = new UdpExchange(new Metrics(), { portsPerUpstream: 1, usesPerSocket: 1_000_000, maxSocketAgeMs: 3_600_000 });
    try {
      const accept = (reply: Buffer): string[] | null => {
        const m = checkMessage(reply);
        return typeof m === 'string' || !(m.flags & QR) || m.qname === null ? null : aRecords(m).map((a) => a.split(' ')[1]!);
      };
      up.attack = false;
      await ex.query(rawQuery('warm-up.poison-target.example'), UP_HOST, up.port, 8000, accept);
      const N = 5;
      let hits = 0;
      for (let i = 0; i < N; i++) {
        up.attack = true;
        const got = await ex.query(rawQuery(victim(i)), UP_HOST, up.port, 8000, accept);
        if (got?.includes(EVIL)) hits++;
        await up.quiet();
      }
      t.diagnostic(`one-port exchange: ${hits} of ${N} queries poisoned, ${up.forged} forged replies`);
      assert.ok(hits >= N - 1, `only ${hits} of ${N} poisoned: the attack itself is broken, so the tests below prove nothing`);
    } finally {
      ex.close();
      await up.close();
    }
  });

  test('the attack works end to end: given the real port, it poisons linedns (client and cache)', async (t) => {
    // The attacker is handed the query's own port, which an off-path attacker cannot see: with
    // every ID sent there, linedns without 0x20 accepts the forgery. Shows the client and cache
    // checks below detect poison when there is some.
    const { outcomes, forged } = await attackLineDns('real', 2);
    const bad = outcomes.filter(poisoned).length;
    t.diagnostic(`given the real port: ${bad} of ${outcomes.length} names poisoned, ${forged} forged replies`);
    assert.ok(bad >= 1, `no poison with the real port known: ${JSON.stringify(outcomes)}`);
  });

  test('20 uncached names, every ID flooded at the last port seen: zero poisoned answers, in the client or the cache', async (t) => {
    // With a fresh socket per query until the pool holds 1024 (and 1 in 1024 after), the port
    // learned from the previous query is never this query's: the kernel does not hand out a port
    // still bound. So an honest failure here has probability 0 while the pool fills, and
    // 20/1024 with a full pool: the attacker's true odds (2^-10 per name) for one port.
    const { outcomes, forged, ports, heard } = await attackLineDns('learned', 20);
    const bad = outcomes.filter(poisoned);
    const ok = outcomes.filter((o) => o.answer.join() === GOOD).length;
    t.diagnostic(`default pool: ${bad.length} of ${outcomes.length} names poisoned, ${ok} answered correctly, ${forged} forged replies (${heard} reached a linedns socket), ${new Set(ports).size} distinct source ports in ${ports.length} queries`);
    assert.deepEqual(bad, []);
    // The learned port is still bound (an older pool socket): the flood reached linedns and
    // was turned away there, not by a closed port.
    assert.ok(heard > forged / 2, `only ${heard} of ${forged} forgeries reached linedns`);
    assert.equal(ok, outcomes.length, 'the real answer, sent 50 ms after the flood, was not used');
  });

  test('with forward.randomizeCase, even every ID at the real port poisons nothing', async (t) => {
    // The attacker is given the query's own port (more than off-path) and sends every ID: the one
    // forgery with the right ID has the question in lower case, not the 0x20 spelling, so it is
    // unusable and ends the attempt (SERVFAIL): nothing poisoned. An honest failure needs the
    // random spelling to be all lower case: 2^-25 per name (25 letters).
    const { outcomes, forged } = await attackLineDns('real', 5, { randomizeCase: true });
    const bad = outcomes.filter(poisoned);
    t.diagnostic(`0x20, real port: ${bad.length} of ${outcomes.length} names poisoned, ${forged} forged replies, answers ${JSON.stringify(outcomes.map((o) => o.answer))}`);
    assert.deepEqual(bad, []);
  });
});

describe('off-path spoofing: source ports', { timeout: 60_000 }, () => {
  test('500 upstream queries leave from at least 450 distinct source ports', async (t) => {
    // While the pool fills, every query opens a socket of its own: this passes by construction
    // with a fresh linedns, and says nothing of the pool once full (the next test).
    const up = await TestUpstream.start(({ raw }) => replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(GOOD))] }), UP_HOST);
    const ld = await startLineDns({ config: { upstreams: [`${UP_HOST}:${up.port}`] } });
    try {
      for (let i = 0; i < 500; i += 25) {
        const replies = await Promise.all(Array.from({ length: 25 }, (_, k) => udpExchange(ld.port, rawQuery(`p${i + k}.ports.example`, 1, { id: k }), { timeoutMs: 3000 })));
        assert.ok(replies.every((r) => r !== null && mustParse(r).rcode === 0), `batch ${i}: a query failed`);
      }
      const ports = new Set(up.requests.map((r) => r.rinfo.port));
      t.diagnostic(`${ports.size} distinct source ports over ${up.requests.length} upstream queries`);
      assert.equal(up.requests.length, 500);
      assert.ok(ports.size >= 450, `only ${ports.size} distinct source ports`);
    } finally {
      await bounded(ld.close(), 'linedns');
      await bounded(up.close(), 'the upstream');
    }
  });

  test('forward.sourcePorts bounds the pool, and a reload to fewer retires the extra sockets', async (t) => {
    const up = await TestUpstream.start(({ raw }) => replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(GOOD))] }), UP_HOST);
    const ld = await startLineDns({ config: { upstreams: [`${UP_HOST}:${up.port}`], forward: { sourcePorts: 8 } } });
    const ask = async (prefix: string, n: number): Promise<Set<number>> => {
      const from = up.requests.length;
      const replies = await Promise.all(Array.from({ length: n }, (_, k) => udpExchange(ld.port, rawQuery(`${prefix}${k}.ports.example`, 1, { id: k }), { timeoutMs: 3000 })));
      assert.ok(replies.every((r) => r !== null && mustParse(r).rcode === 0), `${prefix}: a query failed`);
      return new Set(up.requests.slice(from).map((r) => r.rinfo.port));
    };
    try {
      const eight = await ask('e', 100);
      assert.equal(eight.size, 8, `100 queries through an 8-port pool used ${eight.size} ports`);
      const conf = JSON.parse(readFileSync(ld.configFile, 'utf8')) as { forward: { sourcePorts: number } };
      conf.forward.sourcePorts = 2;
      writeFileSync(ld.configFile, JSON.stringify(conf));
      assert.equal(await ld.server.reloadFromFile(), true);
      const two = await ask('t', 100);
      t.diagnostic(`8 ports: ${eight.size} used; after the reload to 2: ${two.size} used, ${[...two].filter((p) => eight.has(p)).length} of them from before`);
      assert.equal(two.size, 2, `after the reload to 2 ports, 100 queries used ${two.size}`);
    } finally {
      await bounded(ld.close(), 'linedns');
      await bounded(up.close(), 'the upstream');
    }
  });

  test('with the pool full, 500 queries spread over its 1024 ports as a uniform random pick does', async (t) => {
    // 500 uniform picks from m = 1024 ports hit m(1 - (1 - 1/m)^500) = 395.7 distinct ports on
    // average, standard deviation 7.4 (occupancy variance m(m-1)(1-2/m)^n + m(1-1/m)^n -
    // m^2(1-1/m)^2n). So >= 350 (6 sd below) holds unless the pick favours some sockets, and
    // <= 440 (6 sd above) holds unless the queries did not come from a full pool of 1024: a
    // fresh port per query gives 500, 2048 ports 444 on average. (>= 450 of 500, the test
    // above, would need about 4096 ports, 471 on average, or a fresh port per query.) The most
    // any one port carries is Poisson(500/1024) in the tail: P(some port >= 9) ~ 3e-6.
    const up = await TestUpstream.start(({ raw }) => replyTo(raw, { answers: [rr(QNAME_PTR, 1, 1, 300, ipv4(GOOD))] }), UP_HOST);
    const ex = new UdpExchange(new Metrics(), { ...DEFAULT_UDP_OPTIONS, portsPerUpstream: 1024 });
    const run = async (from: number, count: number): Promise<void> => {
      for (let i = from; i < from + count; i += 50) {
        const got = await Promise.all(Array.from({ length: Math.min(50, from + count - i) }, (_, k) => ex.query(rawQuery(`u${i + k}.ports.example`), UP_HOST, up.port, 3000, (b) => b)));
        assert.ok(got.every((g) => g !== null), `batch ${i}: a query failed`);
      }
    };
    try {
      const FILL = 1100;
      await run(0, FILL);
      const filled = new Set(up.requests.map((r) => r.rinfo.port)).size;
      assert.equal(filled, 1024, `the pool holds ${filled} sockets after ${FILL} queries, not 1024`);
      await run(FILL, 500);
      assert.equal(up.requests.length, FILL + 500);
      const perPort = new Map<number, number>();
      for (const r of up.requests.slice(FILL)) perPort.set(r.rinfo.port, (perPort.get(r.rinfo.port) ?? 0) + 1);
      const most = Math.max(...perPort.values());
      t.diagnostic(`full pool: 500 queries from ${perPort.size} distinct ports (uniform over 1024: 395.7 +- 7.4), at most ${most} on one port`);
      assert.ok(perPort.size >= 350 && perPort.size <= 440, `${perPort.size} distinct ports of 500 queries: not a uniform pick from 1024`);
      assert.ok(most <= 8, `one port carried ${most} of 500 queries`);
    } finally {
      ex.close();
      await bounded(up.close(), 'the upstream');
    }
  });
});
