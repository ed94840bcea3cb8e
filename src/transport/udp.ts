// UDP transport: one socket per listen address; replies over the client's size limit (512, or
// its EDNS size, capped by maxUdpSize) go out truncated with TC so the client retries over TCP.

import { performance } from 'node:perf_hooks';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { MIN_UDP_SIZE } from '../lib/dns/constants.js';
import { truncateReply } from '../lib/dns/template.js';
import { QueryContext } from '../core/context.js';
import { TRANSPORT_UDP, type Metrics } from '../lib/metrics.js';
import { Engine, lineSetId, replyRcode } from '../core/engine.js';
import { MEMO_MAX_QUERY, queryHash, type AnswerMemo } from '../core/answer-memo.js';
import { wholeSeconds } from '../lib/clock.js';
import { literalLookup } from '../lib/net/literal-lookup.js';
import { formatHostPort } from '../lib/net/address.js';
import type { ListenOptions } from '../lib/net/listen.js';

export interface UdpTransport {
  socket: dgram.Socket;
  port: number;
  close(): Promise<void>;
}

export function udpLimit(ctx: QueryContext, maxUdpSize: number): number {
  const edns = ctx.query?.edns;
  return edns ? Math.min(edns.udpSize, maxUdpSize) : MIN_UDP_SIZE;
}

export function startUdp(host: string, port: number, getEngine: () => Engine, metrics: Metrics, getMaxUdp: () => number, opts: ListenOptions = {}): Promise<UdpTransport> {
  const received = metrics.counter('udp_queries_total', 'UDP packets received');
  const truncated = metrics.counter('udp_truncated_total', 'UDP replies truncated (TC set)');
  const dropped = metrics.counter('udp_dropped_total', 'UDP packets not answered (dropped by a stage or invalid source)');
  const sendErrors = metrics.counter('udp_send_errors_total', 'UDP replies the kernel refused');
  // reusePort is Node >= 22.12's (the caller checks): @types/node 20 does not know it yet.
  const socketOptions: dgram.SocketOptions & { reusePort?: boolean } = { type: isIPv6(host) ? 'udp6' : 'udp4', ipv6Only: isIPv6(host), lookup: literalLookup };
  if (opts.reusePort === true) socketOptions.reusePort = true;
  const socket = dgram.createSocket(socketOptions);

  const memoHits = metrics.counter('udp_memo_hits_total', 'UDP queries answered from the answer memo (a repeat within the second)');

  /** `memo` and `hash`: where to keep a reusable answer (null: not memoisable). */
  const reply = (ctx: QueryContext, engine: Engine, memo: AnswerMemo | null, hash: number): void => {
    let out = ctx.response;
    if (out === null) {
      dropped.value++;
      return;
    }
    // After the reply hooks (Engine.run): they see the whole reply, and the question is the
    // client's again, so the truncated reply echoes what the client asked.
    const limit = udpLimit(ctx, getMaxUdp());
    const cut = out.length > limit && ctx.query !== null;
    if (cut) {
      out = truncateReply(out, ctx.query!.questionEnd, ctx.query!.edns);
      truncated.value++;
    }
    // With the admin endpoint on, the client's lines are counted (classified now if no stage did).
    const stats = metrics.queries;
    const lineSet = stats === null ? 0 : lineSetId(ctx);
    // A hooked reply is not the pipeline's alone (a hook may depend on anything): never kept.
    if (memo !== null && ctx.reusable !== null && ctx.hooks === null) {
      const q = ctx.query!;
      memo.set(ctx.client.address, ctx.clientRaw, hash, wholeSeconds(ctx.receivedAt), out, ctx.reusable, ctx.answeredBy, q.name, q.qtype, lineSet);
    }
    // No callback: a failed send surfaces as the socket's 'error' event, counted below, and
    // the hot path allocates no closure per reply.
    socket.send(out, ctx.client.port, ctx.client.address);
    if (stats !== null) stats.count(TRANSPORT_UDP, ctx.query?.qtype ?? 0, replyRcode(out), ctx.answeredBy, performance.now() - ctx.receivedAt, lineSet);
    if (engine.observer !== null && engine.wantsReply()) engine.observer(Engine.replyInfo(ctx, out, cut, performance.now()));
  };

  socket.on('message', (msg, rinfo) => {
    received.value++;
    // Port 0 cannot be answered (send() would throw): a spoofed or broken source.
    if (rinfo.port === 0) {
      dropped.value++;
      return;
    }
    const engine = getEngine();
    const now = performance.now();
    let memo = engine.memo;
    let hash = 0;
    if (memo !== null && msg.length <= MEMO_MAX_QUERY) {
      hash = queryHash(msg);
      const m = memo.get(rinfo.address, msg, hash, wholeSeconds(now));
      if (m !== undefined) {
        memoHits.value++;
        m.counter.value++;
        const out = Buffer.allocUnsafe(m.reply.length);
        out.set(m.reply);
        out[0] = msg[0]!;
        out[1] = msg[1]!;
        socket.send(out, rinfo.port, rinfo.address);
        const stats = metrics.queries;
        if (stats !== null) stats.count(TRANSPORT_UDP, m.qtype, replyRcode(out), m.answeredBy, performance.now() - now, m.lineSet);
        if (engine.observer !== null && engine.wantsReply()) engine.observer(Engine.memoReplyInfo(rinfo, m.name, m.qtype, m.answeredBy, out, now, performance.now()));
        return;
      }
    } else memo = null;
    // rinfo already has the ClientInfo shape: no second object per packet.
    const ctx = new QueryContext(msg, rinfo, 'udp', now);
    const r = engine.run(ctx);
    if (r) r.then(() => reply(ctx, engine, memo, hash), () => dropped.value++);
    else reply(ctx, engine, memo, hash);
  });

  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    // exclusive with reusePort: a cluster worker binds a socket of its own, not the primary's.
    socket.bind({ address: host, port, exclusive: opts.reusePort === true }, () => {
      socket.off('error', reject);
      const where = formatHostPort(host, socket.address().port);
      // After binding, an error on the socket is counted (and logged, rate-limited), never fatal.
      socket.on('error', (err) => {
        sendErrors.value++;
        opts.errors?.report('udp send', where, err);
      });
      resolve({
        socket,
        port: socket.address().port,
        close: () => new Promise<void>((res) => socket.close(() => res())),
      });
    });
  });
}
