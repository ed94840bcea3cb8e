// `linedns explain`: one query through the configured pipeline in-process, traced stage by stage,
// offline unless asked to go live, with the final answer in presentation form (text or JSON).

import { performance } from 'node:perf_hooks';
import { isIP } from 'node:net';
import dnsPacket from 'dns-packet';
import { parseCidr } from '../lib/net/address.js';
import { silentLogger } from '../lib/logger.js';
import { Metrics } from '../lib/metrics.js';
import { typeFromName, typeName } from '../lib/dns/constants.js';
import { QueryContext, type UpstreamAnswerer } from '../core/context.js';
import { ViewRegistry } from '../core/views.js';
import type { RuntimeConfig } from '../config/types.js';
import { buildEngine } from './server.js';

export interface ExplainRequest {
  name: string;
  type: string;
  client: string;
  /** A client subnet to send in the query (CIDR), as a trusted proxy would. */
  ecs?: string;
  /** Ask the upstreams for real; otherwise forward only says whom it would ask. */
  live?: boolean;
}

export interface ExplainedRecord {
  name: string;
  ttl: number;
  type: string;
  data: string;
}

export interface Explanation {
  query: { name: string; type: string; client: string; ecs: string | null };
  /** The client's lines, most specific first; null when no classifier is registered. */
  lines: string[] | null;
  /** Stage notes, in the order they were made. */
  trace: string[];
  /**
   * The route the forward stage chose (its zone, "." for the top-level upstreams, then "@" and
   * its labels); null when the query never reached forward.
   */
  route: string | null;
  answeredBy: string | null;
  /** Why nothing was sent, when nothing was (offline forwarding, a drop). */
  notAnswered: string | null;
  rcode: string | null;
  flags: string[];
  answer: ExplainedRecord[];
  authority: ExplainedRecord[];
  additional: ExplainedRecord[];
}

/** A request that cannot be run, with what was expected. */
export class ExplainError extends Error {}

/** Checks the request before anything runs: a client that is no address is not "no line". */
export function checkRequest(r: ExplainRequest): void {
  if (isIP(r.client) === 0) throw new ExplainError(`--client "${r.client}" is not an IP address; expected e.g. 10.1.2.3 or 2001:db8::1`);
  if (typeFromName(r.type) === undefined) throw new ExplainError(`unknown record type "${r.type}"; expected e.g. A, AAAA, MX, TXT or TYPE65`);
  if (r.ecs !== undefined && typeof parseCidr(r.ecs) === 'string') throw new ExplainError(`--ecs "${r.ecs}" is not a CIDR; expected e.g. 10.1.2.0/24`);
}

function query(r: ExplainRequest): Buffer {
  const type = typeName(typeFromName(r.type)!);
  const packet: dnsPacket.Packet = {
    type: 'query',
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: r.name, type: type as 'A', class: 'IN' }],
  };
  if (r.ecs !== undefined) {
    const cidr = parseCidr(r.ecs);
    if (typeof cidr === 'string') throw new ExplainError(cidr);
    const ip = r.ecs.split('/')[0]!;
    packet.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [{ code: 'CLIENT_SUBNET', ip, sourcePrefixLength: cidr.prefix, scopePrefixLength: 0 }] } as unknown as dnsPacket.Answer];
  }
  return dnsPacket.encode(packet);
}

const name = (n: string): string => (n === '.' || n === '' ? '.' : `${n}.`);

/** RDATA in the form a zone file writes it. */
export function presentData(type: string, data: unknown): string {
  const d = data as Record<string, unknown>;
  switch (type) {
    case 'A':
    case 'AAAA':
      return String(data);
    case 'CNAME':
    case 'NS':
    case 'PTR':
    case 'DNAME':
      return name(String(data));
    case 'MX':
      return `${String(d.preference)} ${name(String(d.exchange))}`;
    case 'SRV':
      return `${String(d.priority)} ${String(d.weight)} ${String(d.port)} ${name(String(d.target))}`;
    case 'SOA':
      return `${name(String(d.mname))} ${name(String(d.rname))} ${String(d.serial)} ${String(d.refresh)} ${String(d.retry)} ${String(d.expire)} ${String(d.minimum)}`;
    case 'TXT':
      return (Array.isArray(data) ? data : [data]).map((s) => JSON.stringify(Buffer.isBuffer(s) ? s.toString('latin1') : String(s))).join(' ');
    case 'CAA':
      return `${String(d.flags ?? 0)} ${String(d.tag)} ${JSON.stringify(String(d.value))}`;
    default:
      return Buffer.isBuffer(data) ? `\\# ${data.length} ${data.toString('hex')}` : JSON.stringify(data);
  }
}

type Rr = { name: string; type: string; ttl?: number; data?: unknown };

function records(list: readonly unknown[] | undefined): ExplainedRecord[] {
  return ((list ?? []) as Rr[]).filter((r) => r.type !== 'OPT').map((r) => ({ name: name(r.name), ttl: r.ttl ?? 0, type: r.type, data: presentData(r.type, r.data) }));
}

/**
 * Runs `r` through a pipeline built from `config`, offline unless `r.live`; `answerer` answers
 * for the upstreams when given (golden tests' mock answers).
 */
export async function explain(config: RuntimeConfig, r: ExplainRequest, answerer: UpstreamAnswerer | null = null): Promise<Explanation> {
  checkRequest(r);
  const env = { logger: silentLogger(), metrics: new Metrics(), config, views: new ViewRegistry<QueryContext>() };
  const { engine } = await buildEngine(config.pipeline, env);
  const ctx = new QueryContext(query(r), { address: r.client, port: 53, family: isIP(r.client) === 6 ? 'IPv6' : 'IPv4' }, 'udp', performance.now());
  ctx.tracing = true;
  ctx.offline = r.live !== true;
  ctx.upstreamAnswerer = answerer;
  try {
    await engine.run(ctx);
  } finally {
    await engine.close();
  }
  // Classified now if no stage needed the view (the note says which CIDR matched).
  const lines = ctx.lines;
  const out: Explanation = {
    query: { name: r.name, type: typeName(typeFromName(r.type)!), client: r.client, ecs: r.ecs ?? null },
    lines: lines === null ? null : [...lines.lines],
    trace: [...(ctx.trace ?? [])],
    route: ctx.get('route') ?? null,
    answeredBy: ctx.response ? ctx.answeredBy : null,
    notAnswered: ctx.response ? null : ctx.dropReason || 'no stage answered',
    rcode: null,
    flags: [],
    answer: [],
    authority: [],
    additional: [],
  };
  if (ctx.response) {
    const d = dnsPacket.decode(ctx.response) as dnsPacket.DecodedPacket & { rcode?: string; flag_aa?: boolean; flag_ad?: boolean; flag_tc?: boolean };
    out.rcode = d.rcode ?? 'NOERROR';
    out.flags = (['aa', 'tc', 'rd', 'ra', 'ad', 'cd'] as const).filter((f) => (d as unknown as Record<string, boolean>)[`flag_${f}`] === true);
    out.answer = records(d.answers);
    out.authority = records(d.authorities);
    out.additional = records(d.additionals);
  }
  return out;
}

/** The explanation as a person reads it. */
export function formatExplanation(e: Explanation): string {
  const out: string[] = [`query:      ${e.query.name} ${e.query.type} from ${e.query.client}${e.query.ecs ? ` with client subnet ${e.query.ecs}` : ''}`];
  out.push(`lines:      ${e.lines === null ? '(not classified: no stage registers a classifier)' : e.lines.join(', ') || '(none)'}`);
  for (const t of e.trace) out.push(`trace:      ${t}`);
  if (e.route !== null) out.push(`route:      ${e.route}`);
  if (e.answeredBy === null) {
    out.push(`answered:   (not answered: ${e.notAnswered}${e.notAnswered?.startsWith('offline') ? '; run with --live to ask' : ''})`);
    return `${out.join('\n')}\n`;
  }
  out.push(`answered:   ${e.answeredBy}`);
  out.push(`rcode:      ${e.rcode}${e.flags.length > 0 ? ` (flags ${e.flags.join(' ')})` : ''}`);
  const show = (label: string, rs: readonly ExplainedRecord[]): void => {
    for (const x of rs) out.push(`${label.padEnd(12)}${x.name} ${x.ttl} IN ${x.type} ${x.data}`);
  };
  show('answer:', e.answer);
  show('authority:', e.authority);
  show('additional:', e.additional);
  return `${out.join('\n')}\n`;
}
