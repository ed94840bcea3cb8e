// forward stage: sends the query upstream (UDP, TCP on TC), fails over within a deadline, and
// accepts only replies that match ID, source, and question; SERVFAIL when every upstream failed.
// It also probes each upstream for a forwarding loop back to this server (CoreDNS's loop idea).

import { performance } from 'node:perf_hooks';
import { DEFAULT_EDNS_SIZE, Flag, HEADER_SIZE, QClass, QType, Rcode } from '../../lib/dns/constants.js';
import { sameQuestion, scanMessage, type MessageScan } from '../../lib/dns/message.js';
import { keyToWire } from '../../lib/dns/name.js';
import { formatHostPort, formatIp } from '../../lib/net/address.js';
import type { ClientSubnet, ParsedQuery } from '../../lib/dns/query.js';
import { clientSubnet, ecsOptionSize, readReplyEcs, subnetKey, truncateSubnet, writeEcsOption } from '../../lib/dns/ecs.js';
import { scrubReply } from '../../lib/dns/scrub.js';
import { renderTemplate, templateFromScan, type ScannedTemplate } from '../../lib/dns/template.js';
import { sameUpstream, StreamExchange } from './stream.js';
import { randomU16 } from './random.js';
import { DEFAULT_UDP_OPTIONS, UdpExchange, type Failure, type UdpUpstream, type Waiter } from './udp.js';
import type { UpstreamConfig } from '../../config/types.js';
import type { QueryContext } from '../../core/context.js';
import type { Stage, StageDefinition, StageEnv } from '../../core/stage.js';
import { forwardOptions, type ForwardOptions } from './options.js';

/** Which upstream gave the answer and how long its last attempt took: for the query log and explain. */
export interface UpstreamAnswer {
  /** HOST:PORT, IPv6 as [ADDR]:PORT. */
  readonly address: string;
  readonly ms: number;
}

declare module '../../core/context.js' {
  interface Slots {
    upstream: UpstreamAnswer;
  }
}

interface UpstreamState {
  config: UpstreamConfig;
  consecutiveFailures: number;
  downUntil: number;
  /** Its UDP socket pool (connected to it: ICMP errors fail an attempt at once). */
  lane: UdpUpstream;
  /** A loop probe sent to it came back to us as a client query: queries to it fail at once. */
  looped: boolean;
  /** HOST:PORT as logs show it, made once rather than per answer. */
  address: string;
  /** For /metrics (forward's metrics()): attempts sent, usable answers and their summed latency, failed attempts. */
  sent: number;
  answered: number;
  answerMs: number;
  failures: number;
}

/** After this many failed attempts in a row (not ICMP unreachable: see step) an upstream is tried last for DOWN_MS. */
const FAILURES_BEFORE_DOWN = 3;
const DOWN_MS = 5_000;

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

function createForwardStage(options: ForwardOptions, env: StageEnv): Stage<ForwardOptions> {
  let cfg = options;
  const udp = new UdpExchange(env.metrics, { ...DEFAULT_UDP_OPTIONS, portsPerUpstream: cfg.sourcePorts }, env.logger);
  const streams = new StreamExchange(env.metrics, env.logger);
  const fresh = (config: UpstreamConfig): UpstreamState => ({
    config,
    consecutiveFailures: 0,
    downUntil: 0,
    lane: udp.upstream(config.host, config.port),
    looped: false,
    address: formatHostPort(config.host, config.port),
    sent: 0,
    answered: 0,
    answerMs: 0,
    failures: 0,
  });
  let upstreams: UpstreamState[] = env.config.upstreams.map(fresh);
  const m = env.metrics;
  const forwarded = m.counter('forward_queries_total', 'queries sent upstream');
  const timeouts = m.counter('forward_timeouts_total', 'upstream attempts that timed out or failed');
  const servfails = m.counter('forward_servfail_total', 'queries answered SERVFAIL: every upstream failed');
  const overloaded = m.counter('forward_overload_total', 'queries refused SERVFAIL: too many outstanding upstream queries');
  const tcpRetries = m.counter('forward_tcp_retries_total', 'replies with TC retried over TCP');
  const scrubbed = m.counter('forward_scrubbed_records_total', 'out-of-bailiwick records removed from upstream replies');
  const loops = m.counter('forward_loop_queries_total', 'loop probes of ours that came back as client queries: answered SERVFAIL');
  let outstanding = 0;
  /** Probes in flight by name; looked up per miss only while it is not empty. */
  const probes = new Map<string, Probe>();
  let recheck: NodeJS.Timeout | null = null;
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
    if (recheck !== null || closed || !upstreams.some((u) => u.looped)) return;
    recheck = setTimeout(() => {
      recheck = null;
      probeLoops(upstreams.filter((u) => u.looped));
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

  function ordered(now: number): UpstreamState[] {
    for (let i = 0; i < upstreams.length; i++) {
      if (upstreams[i]!.downUntil > now) return [...upstreams.filter((u) => u.downUntil <= now), ...upstreams.filter((u) => u.downUntil > now)];
    }
    return upstreams;
  }

  /**
   * One forwarded query: the upstreams in order, and per upstream up to three attempts (UDP or
   * TCP; TC -> TCP; EDNS refused -> once more without OPT). Driven by callbacks, not async
   * functions: a miss then costs one promise (the one handed back to the pipeline), not five.
   */
  class Job implements Waiter<Accepted> {
    private readonly order: UpstreamState[];
    private readonly deadline: number;
    private index = -1;
    private attempt = 0;
    private withEdns = true;
    private useTcp = false;
    private query: Buffer | null = null;
    private cased = false;
    private sentAt = 0;
    /** The Client Subnet sent upstream (clientSubnet on): made on the first attempt; null when none. */
    private subnet: ClientSubnet | null | undefined = undefined;

    constructor(
      private readonly ctx: QueryContext,
      private readonly resolve: () => void,
      private readonly reject: (err: unknown) => void,
    ) {
      const start = performance.now();
      this.deadline = start + cfg.deadline;
      this.order = ordered(start);
    }

    /** Moves to the next upstream, or answers SERVFAIL when none is left. */
    private nextUpstream(): void {
      for (;;) {
        if (++this.index >= this.order.length) {
          servfails.value++;
          this.ctx.respondError('forward', Rcode.SERVFAIL);
          this.finish();
          return;
        }
        const u = this.order[this.index]!;
        if (!u.looped) break;
        this.ctx.note(`forward: ${u.address} loops back here; skipped`);
      }
      this.attempt = 0;
      this.withEdns = true;
      // A "tls" upstream is never asked over UDP (nor plain TCP): its answers must be authenticated.
      this.useTcp = this.order[this.index]!.config.protocol !== 'udp';
      this.send();
    }

    private send(): void {
      const u = this.order[this.index]!.config;
      const remaining = this.deadline - performance.now();
      if (this.attempt++ >= 3 || remaining <= 0) {
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
      const timeout = Math.min(cfg.timeout, remaining);
      this.sentAt = performance.now();
      this.order[this.index]!.sent++;
      if (this.useTcp) streams.send(u, query, timeout, this);
      else udp.send(this.order[this.index]!.lane, query, timeout, this);
    }

    accept(reply: Buffer): Accepted | null {
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
      const u = this.order[this.index]!;
      const ctx = this.ctx;
      // An ICMP unreachable can be forged off-path by anyone who hits the socket's address and
      // port pair (no DNS ID needed): were it counted, three forgeries would put a healthy
      // upstream last for DOWN_MS. A really dead one costs a millisecond per query this way.
      if (got === null) return this.failed(failure !== 'unreachable');
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
      u.downUntil = 0;
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
      u.answered++;
      u.answerMs += ms;
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
    private failed(countIt = true): void {
      const u = this.order[this.index]!;
      timeouts.value++;
      u.failures++;
      this.ctx.note(`forward: ${u.address} gave no usable answer`);
      if (countIt && ++u.consecutiveFailures >= FAILURES_BEFORE_DOWN) u.downUntil = performance.now() + DOWN_MS;
      this.nextUpstream();
    }
  }

  return {
    name: 'forward',
    handle(ctx) {
      if (probes.size !== 0) {
        const probe = probes.get(ctx.query!.name);
        if (probe !== undefined) return loopMet(ctx, probe);
      }
      if (ctx.upstreamAnswerer !== null) {
        const reply = ctx.upstreamAnswerer(ctx, ordered(performance.now()).map((u) => u.address));
        if (reply !== null) {
          // Not marked cacheable: a made-up answer must never outlive the run that asked for it.
          ctx.note('forward: answered by the upstream answerer (mock), nothing sent');
          ctx.respond('forward', reply);
          return;
        }
      }
      if (ctx.offline) {
        const order = ordered(performance.now()).map((u) => `${u.address}/${u.config.protocol}`);
        ctx.note(`forward: offline: would ask ${order.length === 0 ? 'no upstream (SERVFAIL)' : order.join(', then ')}`);
        ctx.dropReason = 'offline: not forwarded';
        return;
      }
      if (outstanding >= cfg.maxOutstanding || upstreams.length === 0) {
        overloaded.value++;
        ctx.respondError('forward', Rcode.SERVFAIL);
        return;
      }
      outstanding++;
      forwarded.value++;
      return new Promise<void>((resolve, reject) => new Job(ctx, resolve, reject).start());
    },
    started() {
      probeLoops(upstreams);
    },
    reload(config, o) {
      cfg = o;
      udp.setPortsPerUpstream(cfg.sourcePorts);
      const before = upstreams;
      upstreams = config.upstreams.map((c) => before.find((u) => sameUpstream(u.config, c)) ?? fresh(c));
      for (const u of before) if (!upstreams.some((n) => n.lane === u.lane)) udp.drop(u.lane);
      streams.retain(upstreams.map((u) => u.config));
      // A reload may have made or broken a loop anywhere: every upstream is probed again.
      probeLoops(upstreams);
    },
    // For /readyz: ready while at least one upstream is neither marked down nor looping back.
    health() {
      if (upstreams.length === 0) return { ok: false, reason: 'forward: no upstream configured' };
      const now = performance.now();
      const bad = upstreams.map((u) => (u.looped ? `${u.address} loops back to linedns` : u.downUntil > now ? `${u.address} down (${u.consecutiveFailures} failures in a row)` : null));
      if (bad.some((b) => b === null)) return { ok: true };
      return { ok: false, reason: `forward: no upstream healthy: ${bad.join('; ')}` };
    },
    // For /metrics, per upstream of the running config (a rebuilt pipeline starts them at 0).
    metrics() {
      const now = performance.now();
      const per = (f: (u: UpstreamState) => number): { labels: Record<string, string>; value: number }[] =>
        upstreams.map((u) => ({ labels: { upstream: u.address, protocol: u.config.protocol }, value: f(u) }));
      return [
        { name: 'upstream_queries_total', help: 'attempts sent to this upstream (retries included)', type: 'counter', samples: per((u) => u.sent) },
        { name: 'upstream_answers_total', help: 'usable answers from this upstream', type: 'counter', samples: per((u) => u.answered) },
        { name: 'upstream_answer_seconds_total', help: 'summed latency of the usable answers (divide by upstream_answers_total for the mean)', type: 'counter', samples: per((u) => u.answerMs / 1000) },
        { name: 'upstream_failures_total', help: 'attempts that gave no usable answer (timeout, unusable reply, error)', type: 'counter', samples: per((u) => u.failures) },
        { name: 'upstream_up', help: '0 while the upstream is marked down or loops back to linedns', type: 'gauge', samples: per((u) => (u.looped || u.downUntil > now ? 0 : 1)) },
      ];
    },
    close() {
      closed = true;
      if (recheck !== null) clearTimeout(recheck);
      udp.close();
      streams.close();
    },
  };
}

export const forwardStage: StageDefinition<ForwardOptions> = {
  name: 'forward',
  summary: 'asks the upstreams (random source port and ID per query, failover, reply checks, scrubbing); SERVFAIL when all fail',
  options: forwardOptions,
  requires: [{ name: 'query', where: 'before', reason: 'it forwards the decoded question' }],
  provides: ['cacheable', 'upstream'],
  // A repeat the memo answers was answered by the cache or local data, never by an upstream.
  memoSafe: true,
  dataKeys: ['upstreams'],
  create: createForwardStage,
};
