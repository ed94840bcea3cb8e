// forward stage: picks the route of the query (longest zone, the client's lines), sends the query to
// its upstreams by the route's policy (UDP, TCP on TC), fails over within a deadline, and accepts
// only replies that match ID, source, and question; SERVFAIL when every upstream failed or is down.
// Upstreams that keep failing are marked down and probed back; each is probed for a forwarding loop.

import { performance } from 'node:perf_hooks';
import { DEFAULT_EDNS_SIZE, Flag, HEADER_SIZE, QClass, QType, Rcode, typeFromName } from '../../lib/dns/constants.js';
import { sameQuestion, scanMessage, type MessageScan } from '../../lib/dns/message.js';
import { keyToWire, normalizeName } from '../../lib/dns/name.js';
import { formatHostPort, formatIp } from '../../lib/net/address.js';
import type { ClientSubnet, ParsedQuery } from '../../lib/dns/query.js';
import { clientSubnet, ecsOptionSize, readReplyEcs, subnetKey, truncateSubnet, writeEcsOption } from '../../lib/dns/ecs.js';
import { scrubReply } from '../../lib/dns/scrub.js';
import { EdeCode, withEdeOption } from '../../lib/dns/edns-options.js';
import { renderTemplate, templateFromScan, type ScannedTemplate } from '../../lib/dns/template.js';
import { sameUpstream, StreamExchange } from './stream.js';
import { randomU16 } from './random.js';
import { DEFAULT_UDP_OPTIONS, UdpExchange, type Failure, type Waiter } from './udp.js';
import type { RouteConfig, RuntimeConfig, UpstreamConfig } from '../../config/types.js';
import type { QueryContext } from '../../core/context.js';
import type { Stage, StageDefinition, StageEnv, StageMetric } from '../../core/stage.js';
import { forwardOptions, type ForwardOptions } from './options.js';
import { RouteTable, routeName, type Route } from './routes.js';
import { abandonWaiting, attemptTimeout, backOff, firstIndex, isUp, LATENCY_BUCKETS, linkWaiting, newUpstreamState, orderAt, recordAnswer, smooth, unlinkWaiting, type UpstreamState, type Waiting } from './upstreams.js';

/** Which upstream gave the answer and how long its last attempt took: for the query log and explain. */
export interface UpstreamAnswer {
  /** HOST:PORT, IPv6 as [ADDR]:PORT. */
  readonly address: string;
  readonly ms: number;
}

declare module '../../core/context.js' {
  interface Slots {
    upstream: UpstreamAnswer;
    /** The route forward chose (its name: zone, then @labels); set only when tracing, for explain. */
    route: string;
  }
}

/**
 * Loop probes ask HINFO for `<random>.linedns-loop.invalid`: .invalid (RFC 6761) is never
 * delegated, so a probe that leaves through a resolver without a loop dies there with NXDOMAIN
 * instead of reaching the root servers.
 */
const LOOP_PROBE_SUFFIX = '.linedns-loop.invalid';
/** How often an upstream marked looped is probed again, so a loop fixed elsewhere heals. */
const LOOP_RECHECK_MS = 30_000;

/** Flips the case of each ASCII letter of the (uncompressed) question name at random (0x20). */
function randomizeCase(buf: Buffer, nameEnd: number): void {
  let bits = 0;
  let left = 0;
  for (let at = HEADER_SIZE; at < nameEnd && buf[at] !== 0; ) {
    const len = buf[at]!;
    if (len & 0xc0) return;
    for (let i = at + 1; i <= at + len; i++) {
      const c = buf[i]! | 0x20;
      if (c < 0x61 || c > 0x7a) continue;
      if (left === 0) {
        bits = randomU16();
        left = 16;
      }
      buf[i] = bits & 1 ? c & ~0x20 : c;
      bits >>= 1;
      left--;
    }
    at += len + 1;
  }
}

/**
 * The query we send: the client's question, RD/CD as the client set them, AD always (RFC 6840
 * 5.7: a validating upstream then reports AD on every answer we cache; replies drop it for
 * clients that did not ask), and always an OPT of our own (our payload size, the client's DO)
 * but none of the client's options: its cookies stay here, and so does its subnet unless
 * `clientSubnet` is on, when `subnet` (already cut to the configured prefix) goes in an ECS
 * option of our own with scope 0 (RFC 7871 6). Without one the cache shares answers between clients.
 */
export function upstreamQuery(raw: Buffer, q: ParsedQuery, withEdns: boolean, subnet: ClientSubnet | null = null): Buffer {
  const qLen = q.questionEnd - HEADER_SIZE;
  const optData = withEdns && subnet !== null ? ecsOptionSize(subnet.sourcePrefix) : 0;
  const out = Buffer.allocUnsafe(HEADER_SIZE + qLen + (withEdns ? 11 + optData : 0));
  out.writeUInt16BE(0, 0);
  out.writeUInt16BE((q.flags & (Flag.RD | Flag.CD)) | Flag.AD, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(withEdns ? 1 : 0, 10);
  raw.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
  if (withEdns) {
    const o = q.questionEnd;
    out[o] = 0;
    out.writeUInt16BE(QType.OPT, o + 1);
    out.writeUInt16BE(DEFAULT_EDNS_SIZE, o + 3);
    out.writeUInt32BE(q.edns?.dnssecOk ? 0x8000 : 0, o + 5);
    out.writeUInt16BE(optData, o + 9);
    if (subnet !== null) writeEcsOption(out, o + 11, subnet.family, subnet.sourcePrefix, 0, subnet.address);
  }
  return out;
}

/** The reply hook of a SERVFAIL with every upstream of the route down: EDE 22 (RFC 8914 4.23). */
function noReachableAuthority(_ctx: QueryContext, wire: Buffer): Buffer {
  return withEdeOption(wire, EdeCode.NO_REACHABLE_AUTHORITY);
}

interface Accepted {
  scan: MessageScan;
  /** The scrubbed reply, ready to render; null for a truncated reply (it is retried over TCP). */
  template: ScannedTemplate | null;
  scrubbed: number;
  /** The scope of the reply's Client Subnet option (RFC 7871), 0 when it had none or we sent none. */
  scope: number;
}

/** A loop probe in flight: when its name reaches this stage as a query, `upstream` loops back. */
interface Probe {
  upstream: UpstreamState;
  seen: boolean;
}

/** Questions a probe of an upstream marked down asks: built once per config. */
function probeQuestion(name: string, type: string): Buffer {
  const key = normalizeName(name);
  const wire = keyToWire(key === '' ? '.' : key);
  const q = Buffer.alloc(HEADER_SIZE + wire.length + 4);
  q.writeUInt16BE(Flag.RD, 2);
  q.writeUInt16BE(1, 4);
  wire.copy(q, HEADER_SIZE);
  q.writeUInt16BE(typeFromName(type) ?? QType.NS, HEADER_SIZE + wire.length);
  q.writeUInt16BE(QClass.IN, HEADER_SIZE + wire.length + 2);
  return q;
}

function createForwardStage(options: ForwardOptions, env: StageEnv): Stage<ForwardOptions> {
  let cfg = options;
  const udp = new UdpExchange(env.metrics, { ...DEFAULT_UDP_OPTIONS, portsPerUpstream: cfg.sourcePorts }, env.logger);
  const streams = new StreamExchange(env.metrics, env.logger);
  const fresh = (config: UpstreamConfig): UpstreamState => newUpstreamState(config, formatHostPort(config.host, config.port), udp.upstream(config.host, config.port));
  /**
   * The routes of `config`, each with its own upstream states (health and counters are per route:
   * a route's failures say nothing of another's zone); states of `before` with the same route,
   * address and protocol are kept, so a reload keeps down marks and counters.
   */
  function buildRoutes(config: RuntimeConfig, before: RouteTable | null): RouteTable {
    // Kept by route and upstream as sameUpstream compares them (address, protocol, TLS settings).
    const kept = new Map<string, UpstreamState[]>();
    if (before !== null) for (const r of before.all()) kept.set(r.name, [...r.upstreams]);
    const make = (zone: string, labels: readonly string[] | null, ups: readonly UpstreamConfig[], rc: RouteConfig | null): Route => {
      const name = routeName(zone, labels);
      return {
        zone,
        labels: labels === null ? null : new Set(labels),
        name,
        upstreams: ups.map((c) => kept.get(name)?.find((u) => sameUpstream(u.config, c)) ?? fresh(c)),
        forceTcp: rc?.forceTcp ?? false,
        policy: rc?.policy ?? cfg.policy,
        turn: 0,
      };
    };
    const table = new RouteTable(
      make('', null, config.upstreams, null),
      config.routes.map((rc) => make(rc.zone, rc.labels, rc.upstreams, rc)),
    );
    if (before !== null) {
      const lanes = new Set(table.all().flatMap((r) => r.upstreams.map((u) => u.lane)));
      for (const r of before.all()) for (const u of r.upstreams) if (!lanes.has(u.lane)) udp.drop(u.lane);
    }
    return table;
  }
  let table = buildRoutes(env.config, null);
  /** Every upstream state of every route, for the loops over them all (probes, metrics). */
  let states: { route: Route; u: UpstreamState }[] = table.all().flatMap((route) => route.upstreams.map((u) => ({ route, u })));
  let probeWire = probeQuestion(cfg.health.probeName, cfg.health.probeType);
  const m = env.metrics;
  const forwarded = m.counter('forward_queries_total', 'queries sent upstream');
  const timeouts = m.counter('forward_timeouts_total', 'upstream attempts that timed out or failed');
  const servfails = m.counter('forward_servfail_total', 'queries answered SERVFAIL: every upstream failed');
  const allDown = m.counter('forward_route_down_total', 'queries answered SERVFAIL at once: every upstream of their route was marked down');
  const overloaded = m.counter('forward_overload_total', 'queries refused SERVFAIL: too many outstanding upstream queries');
  const tcpRetries = m.counter('forward_tcp_retries_total', 'replies with TC retried over TCP');
  const scrubbed = m.counter('forward_scrubbed_records_total', 'out-of-bailiwick records removed from upstream replies');
  const loops = m.counter('forward_loop_queries_total', 'loop probes of ours that came back as client queries: answered SERVFAIL');
  const marksDown = m.counter('forward_upstream_down_total', 'times an upstream was marked down');
  let outstanding = 0;
  /** Probes in flight by name; looked up per miss only while it is not empty. */
  const probes = new Map<string, Probe>();
  let recheck: NodeJS.Timeout | null = null;
  /** Probes upstreams marked down; runs only while one is. */
  let prober: NodeJS.Timeout | null = null;
  let closed = false;

  /**
   * Sends each UDP upstream in `targets` a probe for a fresh random name. It comes back to this
   * stage only through a forwarding loop; a NOERROR/NXDOMAIN answer shows the loop is gone.
   * A SERVFAIL or timeout proves nothing (the other side of a loop may have cut it already).
   */
  function probeLoops(targets: readonly UpstreamState[]): void {
    for (const u of targets) {
      if (closed || u.config.protocol !== 'udp') continue;
      const name = `${randomU16().toString(16)}${randomU16().toString(16)}${randomU16().toString(16)}${randomU16().toString(16)}${LOOP_PROBE_SUFFIX}`;
      const wire = keyToWire(name);
      const query = Buffer.alloc(HEADER_SIZE + wire.length + 4);
      query.writeUInt16BE(Flag.RD, 2);
      query.writeUInt16BE(1, 4);
      wire.copy(query, HEADER_SIZE);
      query.writeUInt16BE(QType.HINFO, HEADER_SIZE + wire.length);
      query.writeUInt16BE(QClass.IN, HEADER_SIZE + wire.length + 2);
      const probe: Probe = { upstream: u, seen: false };
      probes.set(name, probe);
      udp.send(u.lane, query, cfg.timeout, {
        accept: (reply) => scanMessage(reply),
        done: (scan) => {
          probes.delete(name);
          if (probe.seen || typeof scan !== 'object' || scan === null) return;
          if (u.looped && (scan.rcode === Rcode.NOERROR || scan.rcode === Rcode.NXDOMAIN)) {
            u.looped = false;
            env.logger.info({ upstream: u.address }, 'forwarding loop through this upstream is gone; using it again');
          }
        },
      });
    }
    scheduleRecheck();
  }

  function scheduleRecheck(): void {
    if (recheck !== null || closed || !states.some((s) => s.u.looped)) return;
    recheck = setTimeout(() => {
      recheck = null;
      probeLoops(states.filter((s) => s.u.looped).map((s) => s.u));
    }, LOOP_RECHECK_MS);
    recheck.unref();
  }

  /** A probe of ours arrived as a query: the upstream it went to forwards back here. */
  function loopMet(ctx: QueryContext, probe: Probe): void {
    const u = probe.upstream;
    probe.seen = true;
    loops.value++;
    if (!u.looped) {
      u.looped = true;
      env.logger.error(
        { upstream: u.address },
        'forwarding loop: queries sent to this upstream come back to this server; answering SERVFAIL instead of forwarding to it',
      );
      scheduleRecheck();
    }
    ctx.note(`forward: loop probe came back through ${u.address}`);
    ctx.respondError('forward', Rcode.SERVFAIL);
  }

  function routeOf(u: UpstreamState): Route | undefined {
    return states.find((s) => s.u === u)?.route;
  }

  /** `u` failed maxFails attempts in a row: no client query goes to it until a probe gets an answer. */
  function markDown(u: UpstreamState, why: string, last: Failure): void {
    u.down = true;
    u.downWhy = why;
    marksDown.value++;
    env.logger.warn({ upstream: u.address, route: routeOf(u)?.name ?? '?', why, last }, 'upstream marked down: no client query goes to it while another upstream of its route is up; probing it');
    startProber();
    // The queries sent before the mark would each still wait out their timeout: on to the next.
    abandonWaiting(u);
  }

  function markUp(u: UpstreamState, how: string): void {
    u.down = false;
    u.consecutiveFailures = 0;
    env.logger.info({ upstream: u.address, route: routeOf(u)?.name ?? '?', was: u.downWhy, how }, 'upstream back up');
    u.downWhy = '';
  }

  function startProber(): void {
    if (prober !== null || closed) return;
    prober = setInterval(probeDown, cfg.health.checkInterval);
    prober.unref();
  }

  function stopProber(): void {
    if (prober !== null) clearInterval(prober);
    prober = null;
  }

  /** One round: each upstream marked down and not being probed gets the probe question. */
  function probeDown(): void {
    let any = false;
    for (const { u, route } of states) {
      if (!u.down) continue;
      any = true;
      if (!u.probing) probeOne(u, route);
    }
    if (!any) stopProber();
  }

  /** Any well-formed reply to the probe question (whatever its rcode) shows the upstream is back. */
  function probeOne(u: UpstreamState, route: Route): void {
    u.probing = true;
    const query = Buffer.from(probeWire);
    const qEnd = query.length;
    const accept = (reply: Buffer): MessageScan | null => {
      const scan = scanMessage(reply);
      return typeof scan === 'object' && (scan.flags & Flag.QR) !== 0 && sameQuestion(query, qEnd, reply, scan.questionEnd) ? scan : null;
    };
    const done = (scan: MessageScan | null): void => {
      u.probing = false;
      if (scan !== null && u.down && !closed) markUp(u, 'answered a probe');
    };
    const timeout = Math.min(cfg.timeout, Math.max(cfg.health.checkInterval, 100));
    if (u.config.protocol !== 'udp' || route.forceTcp) streams.send(u.config, query, timeout, { accept, done });
    else udp.send(u.lane, query, timeout, { accept, done });
  }

  /**
   * Validates, scrubs and templates a reply inside the exchange. Null, or a throw (scrubbing
   * and templating can throw on RDATA scanMessage does not check), makes the reply unusable,
   * which ends the attempt at once: it came from the upstream's address and port with our ID,
   * so it is the upstream's own (see udp.ts).
   * `raw` is the client's query: with 0x20 the question must match `query` octet for octet,
   * and the client's spelling is then put back. `sent` is the Client Subnet of `query`, if any:
   * a reply whose ECS does not echo it (family, source prefix, address) is unusable, as RFC
   * 7871 7.3 says; one with none is an answer for everyone (scope 0).
   */
  function judge(query: Buffer, q: ParsedQuery, reply: Buffer, exactCase: boolean, raw: Buffer, sent: ClientSubnet | null = null): Accepted | null {
    const scan = scanMessage(reply);
    if (typeof scan === 'string') return null;
    if ((scan.flags & 0x7800) !== 0) return null;
    if (!sameQuestion(query, q.questionEnd, reply, scan.questionEnd)) return null;
    if (exactCase) {
      if (query.compare(reply, HEADER_SIZE, q.questionEnd, HEADER_SIZE, q.questionEnd) !== 0) return null;
      raw.copy(reply, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
    }
    let scope = 0;
    if (sent !== null) {
      const ecs = readReplyEcs(reply, scan, sent);
      if (ecs === 'bad') return null;
      // RFC 7871 7.3.1: a scope beyond what we sent is cached for what we sent.
      if (ecs !== null) scope = Math.min(ecs, sent.sourcePrefix);
    }
    if (scan.flags & Flag.TC) return { scan, template: null, scrubbed: 0, scope };
    // Every class decode lets through (IN, CH, ANY) is scrubbed: what belongs to a question
    // follows from names and types alone. The reply buffer is ours (dgram hands each datagram
    // its own); templateFromScan copies it.
    const s = scrubReply(reply, scan, q.name);
    if (typeof s === 'string') return null;
    return { scan: s.scan, template: templateFromScan(s.buf, s.scan, false), scrubbed: s.dropped, scope };
  }

  /** The Client Subnet to send for this client (`clientSubnet` on), or null. */
  function outgoingSubnet(ctx: QueryContext): ClientSubnet | null {
    const prefixes = cfg.clientSubnet;
    if (prefixes === 'off') return null;
    const ecs = ctx.query!.edns?.ecs ?? null;
    const subnet = clientSubnet(ctx.client.address, ecs, ecs !== null && ctx.ecsTrusted);
    return subnet === null ? null : truncateSubnet(subnet, prefixes);
  }

  /** The upstreams `route` would ask now, in order, for explain and the mock answerer (not the query path). */
  function wouldAsk(route: Route): UpstreamState[] {
    const n = route.upstreams.length;
    const first = n === 0 ? 0 : firstIndex(route.policy, route.upstreams, route.turn, 0);
    const out: UpstreamState[] = [];
    for (let k = 0; k < n; k++) {
      const u = route.upstreams[orderAt(route.policy, n, first, k)]!;
      if (isUp(u)) out.push(u);
    }
    return out;
  }

  /**
   * One forwarded query: its route's upstreams in the order of the route's policy, skipping those
   * marked down or looping, and per upstream up to three attempts (UDP or TCP; TC -> TCP; EDNS
   * refused -> once more without OPT). Driven by callbacks, not async functions: a miss then
   * costs one promise (the one handed back to the pipeline), not five; the order is computed
   * step by step from `first` rather than kept in an array.
   */
  class Job implements Waiter<Accepted>, Waiting {
    private readonly deadline: number;
    private readonly first: number;
    prevWaiting: Waiting | null = null;
    nextWaiting: Waiting | null = null;
    /** Handed on to another Job by abandon(): the callbacks of its last attempt are ignored. */
    private abandoned = false;
    /** Position in the route's order (-1 before the first); `at` the upstream's index there. */
    private k = -1;
    private at = 0;
    /** Upstreams actually asked: none means every one was down or looping. */
    private asked = 0;
    private attempt = 0;
    private withEdns = true;
    private useTcp = false;
    private query: Buffer | null = null;
    private cased = false;
    private sentAt = 0;
    /** The upstream's RTO (at least minTimeout) when the attempt in flight was sent: a timeout doubles that one (backOff). */
    private sentRto = 0;
    /** The Client Subnet sent upstream (clientSubnet on): made on the first attempt; null when none. */
    private subnet: ClientSubnet | null | undefined = undefined;

    constructor(
      private readonly ctx: QueryContext,
      private readonly route: Route,
      private readonly resolve: () => void,
      private readonly reject: (err: unknown) => void,
      from: Job | null = null,
    ) {
      if (from !== null) {
        this.deadline = from.deadline;
        this.first = from.first;
        this.k = from.k;
        this.at = from.at;
        this.asked = from.asked;
        this.sentAt = from.sentAt;
        this.subnet = from.subnet;
        return;
      }
      this.deadline = performance.now() + cfg.deadline;
      const r = route;
      this.first = firstIndex(r.policy, r.upstreams, r.policy === 'round_robin' ? r.turn++ : 0, r.policy === 'random' ? randomU16() : 0);
    }

    /**
     * The upstream this query waits for was marked down (markDown). The pending attempt still
     * holds this object as its waiter, so the query goes on in a new Job (allocated only here,
     * never on the usual path) and this one ignores whatever that attempt still reports.
     */
    abandon(): void {
      this.abandoned = true;
      const u = this.route.upstreams[this.at]!;
      timeouts.value++;
      u.failures++;
      this.ctx.note(`forward: ${u.address} was marked down while this query waited for it; trying the next upstream`);
      new Job(this.ctx, this.route, this.resolve, this.reject, this).start();
    }

    /** Moves to the next upstream that is up, or answers SERVFAIL when none is left. */
    private nextUpstream(): void {
      const list = this.route.upstreams;
      for (;;) {
        if (++this.k >= list.length) {
          servfails.value++;
          if (this.asked === 0) {
            allDown.value++;
            this.ctx.note(`forward: every upstream of route ${this.route.name} is marked down or loops back: SERVFAIL at once`);
            if (this.ctx.query!.edns) this.ctx.onReply(noReachableAuthority);
          }
          this.ctx.respondError('forward', Rcode.SERVFAIL);
          this.finish();
          return;
        }
        const i = orderAt(this.route.policy, list.length, this.first, this.k);
        const u = list[i]!;
        if (u.looped) {
          this.ctx.note(`forward: ${u.address} loops back here; skipped`);
          continue;
        }
        if (u.down) {
          if (this.ctx.tracing) this.ctx.note(`forward: ${u.address} is marked down (${u.downWhy}); skipped`);
          continue;
        }
        this.at = i;
        break;
      }
      this.asked++;
      this.attempt = 0;
      this.withEdns = true;
      const u = list[this.at]!;
      // A "tls" upstream is never asked over UDP (nor plain TCP): its answers must be authenticated.
      this.useTcp = u.config.protocol !== 'udp' || this.route.forceTcp;
      if (this.ctx.tracing) this.ctx.note(`forward: asking ${u.address}${this.useTcp ? ` over ${u.config.protocol === 'tls' ? 'TLS' : 'TCP'}` : ''} (policy ${this.route.policy})`);
      this.send();
    }

    private send(): void {
      const state = this.route.upstreams[this.at]!;
      const u = state.config;
      const remaining = this.deadline - performance.now();
      if (remaining <= 0) {
        // The query's time is up, not the upstream's fault: no failure counted against it (and
        // none against each upstream after it), which would mark healthy ones down.
        servfails.value++;
        this.ctx.note(`forward: deadline passed before ${state.address} could be asked`);
        this.ctx.respondError('forward', Rcode.SERVFAIL);
        this.finish();
        return;
      }
      if (this.attempt++ >= 3) {
        this.failed();
        return;
      }
      const q = this.ctx.query!;
      if (this.subnet === undefined) {
        this.subnet = outgoingSubnet(this.ctx);
        if (this.ctx.tracing && this.subnet !== null) this.ctx.note(`forward: client subnet ${formatIp(this.subnet.address)}/${this.subnet.sourcePrefix} sent upstream`);
      }
      const query = upstreamQuery(this.ctx.raw, q, this.withEdns, this.withEdns ? this.subnet : null);
      this.cased = cfg.randomizeCase;
      if (this.cased) randomizeCase(query, q.questionEnd - 4);
      this.query = query;
      const wait = this.attemptTimeout(state);
      const timeout = Math.min(wait, remaining);
      this.sentRto = Math.max(cfg.minTimeout, state.rto);
      if (this.ctx.tracing && wait < cfg.timeout) this.ctx.note(`forward: waiting at most ${Math.round(wait)} ms for ${state.address} (its RTO ${Math.round(state.rto)} ms; timeout ${cfg.timeout})`);
      this.sentAt = performance.now();
      state.sent++;
      linkWaiting(state, this);
      if (this.useTcp) streams.send(u, query, timeout, this);
      else udp.send(state.lane, query, timeout, this);
    }

    /**
     * How long this attempt waits (before the deadline cuts it). The first UDP attempt to an
     * upstream with another one of the route up after it waits the upstream's RTO (minTimeout to
     * timeout): failing over after about its usual answer time rather than `timeout` is what
     * keeps queries alive while a dead upstream has not been marked down yet. The others wait
     * `timeout`: the last upstream left has nothing to fail over to, so a short wait would only
     * turn a slow answer into SERVFAIL; a retry follows a reply, so the upstream is alive; and a
     * TCP or TLS attempt may have to open its connection first (one to three RTTs more).
     */
    private attemptTimeout(u: UpstreamState): number {
      if (this.attempt !== 1 || this.useTcp) return cfg.timeout;
      const list = this.route.upstreams;
      for (let k = this.k + 1; k < list.length; k++) {
        if (isUp(list[orderAt(this.route.policy, list.length, this.first, k)]!)) return attemptTimeout(u, cfg.minTimeout, cfg.timeout);
      }
      return cfg.timeout;
    }

    accept(reply: Buffer): Accepted | null {
      if (this.abandoned) return null;
      return judge(this.query!, this.ctx.query!, reply, this.cased, this.ctx.raw, this.withEdns ? this.subnet! : null);
    }

    start(): void {
      try {
        this.nextUpstream();
      } catch (err) {
        this.fail(err);
      }
    }

    /** Called by the exchange (UDP or stream): a throw here must fail this query, not the socket. */
    done(got: Accepted | null, failure?: Failure): void {
      if (this.abandoned) return;
      unlinkWaiting(this.route.upstreams[this.at]!, this);
      try {
        this.step(got, failure);
      } catch (err) {
        this.fail(err);
      }
    }

    private fail(err: unknown): void {
      outstanding--;
      this.reject(err);
    }

    private finish(): void {
      outstanding--;
      this.resolve();
    }

    private step(got: Accepted | null, failure: Failure | undefined): void {
      const u = this.route.upstreams[this.at]!;
      const ctx = this.ctx;
      // An ICMP unreachable can be forged off-path by anyone who hits the socket's address and
      // port pair (no DNS ID needed): were it counted, maxFails forgeries would mark a healthy
      // upstream down. A really dead one costs a millisecond per query this way. 'dropped': a
      // TCP/TLS connection failed under several queries; another of them counts that failure.
      if (got === null) return this.failed(failure !== 'unreachable' && failure !== 'dropped', failure);
      if (got.scan.flags & Flag.TC) {
        if (this.useTcp) return this.failed();
        tcpRetries.value++;
        ctx.note(`forward: ${u.address} truncated; retrying over TCP`);
        this.useTcp = true;
        return this.send();
      }
      if (this.withEdns && (got.scan.rcode === Rcode.FORMERR || got.scan.rcode === Rcode.NOTIMP) && got.scan.opt < 0) {
        this.withEdns = false; // an upstream from before EDNS (RFC 6891 section 7)
        return this.send();
      }
      u.consecutiveFailures = 0;
      // Sent before it was marked down, answered after: it is back, whatever the prober knows yet.
      if (u.down) markUp(u, 'answered a query');
      const rcode = got.scan.rcode;
      if ((rcode === Rcode.REFUSED || rcode === Rcode.FORMERR) && this.withEdns && this.subnet) {
        // Some servers refuse queries with a Client Subnet: the query goes on without one, for
        // everyone alike (Unbound's subnetcache does the same on REFUSED).
        ctx.note(`forward: ${u.address} answered rcode ${rcode} to a client subnet; retrying without it`);
        this.subnet = null;
        return this.send();
      }
      if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) {
        ctx.note(`forward: ${u.address} answered rcode ${rcode}; trying the next upstream`);
        return this.nextUpstream();
      }
      if (got.scrubbed > 0) {
        scrubbed.value += got.scrubbed;
        ctx.note(`forward: scrubbed ${got.scrubbed} unrelated records`);
      }
      const t = got.template!;
      if (ctx.tracing) ctx.note(`forward: answered by ${u.address}`);
      const response = renderTemplate(t, ctx.raw, ctx.query!, 0);
      ctx.respond('forward', response);
      ctx.set('cacheable', { local: false, template: t, response, subnet: this.scoped(got.scope) });
      const ms = performance.now() - this.sentAt;
      ctx.set('upstream', { address: u.address, ms });
      recordAnswer(u, ms, this.attempt === 1);
      this.finish();
    }

    /**
     * An answer with Client Subnet scope S > 0 is valid only for clients in the sent subnet cut
     * to S (RFC 7871 7.3.1): the cache's key for it, or null (shared). A client whose own ECS we
     * sent learns S in its reply; one we sent the socket address of gets the same answer whatever
     * ECS it sends, so its reply says 0.
     */
    private scoped(scope: number): string | null {
      const sent = this.subnet;
      if (scope === 0 || sent === null || sent === undefined || !this.withEdns) return null;
      const ctx = this.ctx;
      if (ctx.tracing) ctx.note(`forward: the answer is for client subnet scope /${scope} only`);
      if (ctx.query!.edns?.ecs && ctx.ecsTrusted && scope > ctx.ecsScope) ctx.ecsScope = scope;
      return subnetKey(sent.family, sent.address, scope);
    }

    /** This upstream gave no usable answer: count it against it (unless told not to) and try the next. */
    private failed(countIt = true, failure: Failure = 'unusable'): void {
      const u = this.route.upstreams[this.at]!;
      timeouts.value++;
      u.failures++;
      this.ctx.note(`forward: ${u.address} gave no usable answer`);
      if (countIt) {
        // The fastest policy must learn that a failing upstream is slow, not untried.
        smooth(u, performance.now() - this.sentAt);
        // No RTT sample (Karn): a timeout backs the RTO off, so a slow but live upstream whose
        // answers came after it is waited for longer next time rather than starved.
        if (failure === 'timeout') backOff(u, this.sentRto, cfg.minTimeout, cfg.timeout);
        if (++u.consecutiveFailures >= cfg.health.maxFails && !u.down) markDown(u, `${u.consecutiveFailures} failures in a row`, failure);
      }
      this.nextUpstream();
    }
  }

  const upstreamLabels = (route: Route, u: UpstreamState): Record<string, string> => ({ upstream: u.address, protocol: u.config.protocol, route: route.name });

  return {
    name: 'forward',
    handle(ctx) {
      if (probes.size !== 0) {
        const probe = probes.get(ctx.query!.name);
        if (probe !== undefined) return loopMet(ctx, probe);
      }
      const route = table.match(ctx);
      if (ctx.tracing) {
        ctx.set('route', route.name);
        if (route === table.root) ctx.note(`forward: route . (the top-level upstreams)${table.routed ? ': no zone of "routes" matches for this client' : ''}`);
      }
      if (ctx.upstreamAnswerer !== null) {
        const reply = ctx.upstreamAnswerer(ctx, wouldAsk(route).map((u) => u.address));
        if (reply !== null) {
          // Not marked cacheable: a made-up answer must never outlive the run that asked for it.
          ctx.note('forward: answered by the upstream answerer (mock), nothing sent');
          ctx.respond('forward', reply);
          return;
        }
      }
      if (ctx.offline) {
        const order = wouldAsk(route).map((u) => `${u.address}/${u.config.protocol === 'tcp' || route.forceTcp ? 'tcp' : 'udp'}`);
        ctx.note(`forward: offline: would ask ${order.length === 0 ? `no upstream of route ${route.name} (all marked down or looping: SERVFAIL)` : order.join(', then ')}`);
        ctx.dropReason = 'offline: not forwarded';
        return;
      }
      if (outstanding >= cfg.maxOutstanding || route.upstreams.length === 0) {
        overloaded.value++;
        ctx.respondError('forward', Rcode.SERVFAIL);
        return;
      }
      outstanding++;
      forwarded.value++;
      return new Promise<void>((resolve, reject) => new Job(ctx, route, resolve, reject).start());
    },
    started() {
      probeLoops(states.map((s) => s.u));
    },
    reload(config, o) {
      cfg = o;
      udp.setPortsPerUpstream(cfg.sourcePorts);
      table = buildRoutes(config, table);
      states = table.all().flatMap((route) => route.upstreams.map((u) => ({ route, u })));
      probeWire = probeQuestion(cfg.health.probeName, cfg.health.probeType);
      // The interval may have changed; upstreams still down are probed at the new one.
      stopProber();
      if (states.some((s) => s.u.down)) startProber();
      streams.retain(states.map((s) => s.u.config));
      // A reload may have made or broken a loop anywhere: every upstream is probed again.
      probeLoops(states.map((s) => s.u));
    },
    // For /readyz: ready while every route has an upstream neither marked down nor looping back.
    health() {
      if (table.root.upstreams.length === 0) return { ok: false, reason: 'forward: no upstream configured' };
      const why = (u: UpstreamState): string | null => (u.looped ? `${u.address} loops back to linedns` : u.down ? `${u.address} down (${u.downWhy})` : null);
      const bad: string[] = [];
      for (const r of table.all()) {
        const list = r.upstreams.map(why);
        if (list.some((b) => b === null)) continue;
        bad.push(r === table.root ? `no upstream healthy: ${list.join('; ')}` : `no upstream of route ${r.name} healthy: ${list.join('; ')}`);
      }
      return bad.length === 0 ? { ok: true } : { ok: false, reason: `forward: ${bad.join('; ')}` };
    },
    // For /metrics, per upstream of each route of the running config (a rebuilt pipeline starts them at 0).
    metrics(): StageMetric[] {
      const per = (f: (u: UpstreamState) => number): { labels: Record<string, string>; value: number }[] => states.map((s) => ({ labels: upstreamLabels(s.route, s.u), value: f(s.u) }));
      return [
        { name: 'upstream_queries_total', help: 'attempts sent to this upstream (retries included)', type: 'counter', samples: per((u) => u.sent) },
        { name: 'upstream_answers_total', help: 'usable answers from this upstream', type: 'counter', samples: per((u) => u.answered) },
        { name: 'upstream_answer_seconds_total', help: 'summed latency of the usable answers (divide by upstream_answers_total for the mean)', type: 'counter', samples: per((u) => u.answerMs / 1000) },
        { name: 'upstream_failures_total', help: 'attempts that gave no usable answer (timeout, unusable reply, error)', type: 'counter', samples: per((u) => u.failures) },
        {
          name: 'upstream_timeout_seconds',
          help: 'how long a first UDP attempt to this upstream waits now when another upstream could follow: its RTO, from minTimeout to timeout (timeout over TCP and TLS)',
          type: 'gauge',
          aggregate: 'max',
          // TCP and TLS attempts always wait `timeout` (Job.attemptTimeout).
          samples: states.map((s) => ({ labels: upstreamLabels(s.route, s.u), value: (s.u.config.protocol !== 'udp' || s.route.forceTcp ? cfg.timeout : attemptTimeout(s.u, cfg.minTimeout, cfg.timeout)) / 1000 })),
        },
        { name: 'upstream_up', help: '0 while the upstream is marked down or loops back to linedns', type: 'gauge', aggregate: 'min', samples: per((u) => (isUp(u) ? 1 : 0)) },
        {
          name: 'upstream_answer_duration_seconds',
          help: 'latency of the usable answers from this upstream (from the last attempt sent)',
          type: 'histogram',
          buckets: LATENCY_BUCKETS,
          samples: states.map((s) => ({ labels: upstreamLabels(s.route, s.u), counts: [...s.u.buckets], sum: s.u.answerMs / 1000 })),
        },
      ];
    },
    close() {
      closed = true;
      if (recheck !== null) clearTimeout(recheck);
      stopProber();
      udp.close();
      streams.close();
    },
  };
}

export const forwardStage: StageDefinition<ForwardOptions> = {
  name: 'forward',
  summary: "asks the route's upstreams (longest zone, client's lines) by its policy (random source port and ID per query, failover, down marks and probes, reply checks, scrubbing); SERVFAIL when all fail",
  options: forwardOptions,
  requires: [
    { name: 'query', where: 'before', reason: 'it forwards the decoded question' },
    {
      name: 'view',
      where: 'anywhere',
      reason: (facts) =>
        `the route for ${JSON.stringify(facts.labelledRoute?.zone)} serves ${(facts.labelledRoute?.labels ?? []).map((l) => JSON.stringify(l)).join(', ')} only, and only a stage that knows the client's lines can tell who is in them; without one no client would ever take it`,
      when: (_o, facts) => facts.labelledRoute != null,
    },
  ],
  provides: ['cacheable', 'upstream', 'route', 'variesByView'],
  // A repeat the memo answers was answered by the cache or local data, never by an upstream.
  memoSafe: true,
  dataKeys: ['upstreams', 'routes'],
  create: createForwardStage,
};
