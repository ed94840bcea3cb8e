// DNS wire constants shared by the parser, the renderers and the stages.
// Numbers, not strings, because the hot path compares them on every packet.

export const HEADER_SIZE = 12;
export const MAX_NAME_WIRE = 255;
export const MAX_LABEL = 63;
/** Largest UDP payload we ever send or advertise (DNS flag day 2020 value). */
export const DEFAULT_EDNS_SIZE = 1232;
export const MIN_UDP_SIZE = 512;

export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  /** Extended rcode 16: header rcode 0, OPT extended-rcode 1. */
  BADVERS: 16,
} as const;

export const Opcode = { QUERY: 0 } as const;

export const QType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  HINFO: 13,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  RRSIG: 46,
  IXFR: 251,
  AXFR: 252,
  MAILB: 253,
  MAILA: 254,
  ANY: 255,
  CAA: 257,
} as const;

export const QClass = { IN: 1, CH: 3, HS: 4, NONE: 254, ANY: 255 } as const;

export const Flag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  Z: 0x0040,
  AD: 0x0020,
  CD: 0x0010,
} as const;

export const OPCODE_MASK = 0x7800;
export const RCODE_MASK = 0x000f;

export const EdnsOption = { ECS: 8, COOKIE: 10, PADDING: 12, EDE: 15 } as const;

const TYPE_NAMES: Record<string, number> = { ...QType };
const TYPE_BY_NUMBER = new Map<number, string>(Object.entries(QType).map(([k, v]) => [v, k]));

/** "A" -> 1, "TYPE65" -> 65 (RFC 3597 spelling); undefined when unknown. */
export function typeFromName(name: string): number | undefined {
  const upper = name.toUpperCase();
  const known = TYPE_NAMES[upper];
  if (known !== undefined) return known;
  const m = /^TYPE(\d{1,5})$/.exec(upper);
  if (m) {
    const n = Number(m[1]);
    if (n <= 0xffff) return n;
  }
  return undefined;
}

export function typeName(type: number): string {
  return TYPE_BY_NUMBER.get(type) ?? `TYPE${type}`;
}

const RCODE_NAMES = new Map<number, string>(Object.entries(Rcode).map(([k, v]) => [v, k]));

/** NOERROR, NXDOMAIN, ... or RCODE<n> for one without a name here. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}

/** The RCODE a name such as "NXDOMAIN" stands for (any case), or undefined. */
export function rcodeFromName(name: string): number | undefined {
  const v = (Rcode as Record<string, number>)[name.toUpperCase()];
  return v;
}
