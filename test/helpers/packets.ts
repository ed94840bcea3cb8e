// Raw DNS wire builders and an independent, strict message checker for the hostile-input tests.
// Hand-written rather than dns-packet because the tests must write what dns-packet refuses or repairs.

export const QR = 0x8000;
export const TC = 0x0200;
export const RD = 0x0100;
export const RA = 0x0080;
export const OPCODE_MASK = 0x7800;

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff, 0);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** Wire form of a presentation name without escapes ("a.b" -> 1a1b0, "." -> 0). */
export function nameWire(name: string): Buffer {
  if (name === '.' || name === '') return Buffer.from([0]);
  const parts = name.replace(/\.$/, '').split('.');
  return labelsWire(parts.map((p) => Buffer.from(p, 'latin1')));
}

/** Wire form of raw labels; lengths are written as given, so a label over 63 stays over 63. */
export function labelsWire(labels: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) parts.push(Buffer.from([l.length & 0xff]), Buffer.from(l));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export interface HeaderFields {
  id?: number;
  flags?: number;
  qd?: number;
  an?: number;
  ns?: number;
  ar?: number;
}

export function header(h: HeaderFields = {}): Buffer {
  return Buffer.concat([u16(h.id ?? 0), u16(h.flags ?? RD), u16(h.qd ?? 1), u16(h.an ?? 0), u16(h.ns ?? 0), u16(h.ar ?? 0)]);
}

export function question(name: Buffer | string, type = 1, klass = 1): Buffer {
  return Buffer.concat([typeof name === 'string' ? nameWire(name) : name, u16(type), u16(klass)]);
}

export function rr(owner: Buffer | string, type: number, klass: number, ttl: number, rdata: Buffer, rdlength = rdata.length): Buffer {
  return Buffer.concat([typeof owner === 'string' ? nameWire(owner) : owner, u16(type), u16(klass), u32(ttl), u16(rdlength), rdata]);
}

export function ednsOption(code: number, data: Buffer): Buffer {
  return Buffer.concat([u16(code), u16(data.length), data]);
}

/** An ECS option (RFC 7871) with the address octets given verbatim, so any length can be written. */
export function ecsOption(family: number, sourcePrefix: number, scopePrefix: number, address: readonly number[]): Buffer {
  return ednsOption(8, Buffer.concat([u16(family), Buffer.from([sourcePrefix & 0xff, scopePrefix & 0xff]), Buffer.from(address)]));
}

export interface OptFields {
  owner?: Buffer;
  udpSize?: number;
  extRcode?: number;
  version?: number;
  /** DO is 0x8000. */
  flags?: number;
  options?: Buffer[];
}

export function optRecord(o: OptFields = {}): Buffer {
  const rdata = Buffer.concat(o.options ?? []);
  const ttl = (((o.extRcode ?? 0) & 0xff) << 24) | (((o.version ?? 0) & 0xff) << 16) | ((o.flags ?? 0) & 0xffff);
  return rr(o.owner ?? Buffer.from([0]), 41, o.udpSize ?? 1232, ttl, rdata);
}

/** A well-formed query; `opt` adds one OPT record. */
export function rawQuery(name: string, type = 1, opts: { id?: number; flags?: number; opt?: OptFields; klass?: number } = {}): Buffer {
  const parts = [header({ id: opts.id ?? 0, flags: opts.flags ?? RD, ar: opts.opt ? 1 : 0 }), question(name, type, opts.klass ?? 1)];
  if (opts.opt) parts.push(optRecord(opts.opt));
  return Buffer.concat(parts);
}

export interface CheckedRecord {
  section: 0 | 1 | 2;
  owner: string;
  type: number;
  klass: number;
  ttl: number;
  rdStart: number;
  rdata: Buffer;
}

export interface CheckedMessage {
  id: number;
  flags: number;
  /** Header rcode plus the OPT extended bits. */
  rcode: number;
  qdcount: number;
  /** Offset past the question, or 12 when there is none. */
  questionEnd: number;
  qname: string | null;
  qtype: number;
  qclass: number;
  records: CheckedRecord[];
  opt: CheckedRecord | null;
}

interface NameAt {
  name: string;
  end: number;
}

/**
 * Reads a name strictly: pointers only to earlier offsets (so no loop and no forward jump),
 * labels of at most 63 octets, at most 255 octets in all. Independent of src/dns on purpose.
 */
export function readWireName(buf: Uint8Array, offset: number): NameAt | null {
  const labels: string[] = [];
  let total = 0;
  let off = offset;
  let end = -1;
  // Every pointer goes strictly backwards and every label adds to the 255 limit, so this ends;
  // the bound only guards against a mistake here.
  for (let steps = 0; steps <= buf.length + 1; steps++) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    if (len === 0) {
      total += 1;
      if (total > 255) return null;
      return { name: labels.length === 0 ? '.' : labels.join('.'), end: end < 0 ? off + 1 : end };
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length) return null;
      const target = ((len & 0x3f) << 8) | buf[off + 1]!;
      if (target >= off) return null;
      if (end < 0) end = off + 2;
      off = target;
      continue;
    }
    if (len > 63) return null;
    if (off + 1 + len > buf.length) return null;
    total += len + 1;
    if (total > 255) return null;
    let label = '';
    for (let i = off + 1; i <= off + len; i++) {
      const c = buf[i]!;
      const lower = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
      label += lower === 0x2e || lower === 0x5c ? `\\${String.fromCharCode(lower)}` : lower < 0x21 || lower > 0x7e ? `\\${String(lower).padStart(3, '0')}` : String.fromCharCode(lower);
    }
    labels.push(label);
    off += len + 1;
  }
  return null;
}

/** Octets before the names, names, and fixed octets after them, of types whose RDATA holds names. */
const NAME_RDATA: Record<number, [number, number, number]> = { 2: [0, 1, 0], 5: [0, 1, 0], 12: [0, 1, 0], 39: [0, 1, 0], 15: [2, 1, 0], 33: [6, 1, 0], 6: [0, 2, 20] };

/** Null when the names in an NS/CNAME/PTR/DNAME/MX/SRV/SOA RDATA are valid and fill RDLENGTH exactly. */
function checkRdataNames(b: Uint8Array, type: number, rdStart: number, rdlen: number): string | null {
  const shape = NAME_RDATA[type];
  if (shape === undefined) return null;
  const end = rdStart + rdlen;
  let o = rdStart + shape[0];
  for (let i = 0; i < shape[1]; i++) {
    if (o >= end) return `type ${type}: RDATA too short`;
    const n = readWireName(b, o);
    if (n === null || n.end > end) return `type ${type}: malformed name in RDATA`;
    o = n.end;
  }
  return o + shape[2] === end ? null : `type ${type}: RDLENGTH ${rdlen} does not fit its RDATA`;
}

/**
 * Checks that `buf` is a well-formed DNS message a client can parse: a header, at most one
 * question, records inside the packet, A/AAAA of the right size, names in RDATA that fill it
 * exactly, at most one OPT (in the additional section, owned by the root) and nothing after the
 * last record.
 * Returns the parsed message or a reason.
 */
export function checkMessage(buf: Uint8Array): CheckedMessage | string {
  if (buf.length < 12) return `only ${buf.length} octets`;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const id = b.readUInt16BE(0);
  const flags = b.readUInt16BE(2);
  const qdcount = b.readUInt16BE(4);
  const counts = [b.readUInt16BE(6), b.readUInt16BE(8), b.readUInt16BE(10)];
  if (qdcount > 1) return `QDCOUNT ${qdcount}`;
  let off = 12;
  let qname: string | null = null;
  let qtype = 0;
  let qclass = 0;
  if (qdcount === 1) {
    const n = readWireName(b, 12);
    if (n === null || n.end + 4 > b.length) return 'malformed question';
    qname = n.name;
    qtype = b.readUInt16BE(n.end);
    qclass = b.readUInt16BE(n.end + 2);
    off = n.end + 4;
  }
  const questionEnd = off;
  const records: CheckedRecord[] = [];
  let opt: CheckedRecord | null = null;
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const n = readWireName(b, off);
      if (n === null || n.end + 10 > b.length) return `malformed record ${records.length}`;
      const type = b.readUInt16BE(n.end);
      const klass = b.readUInt16BE(n.end + 2);
      const ttl = b.readUInt32BE(n.end + 4);
      const rdlen = b.readUInt16BE(n.end + 8);
      const rdStart = n.end + 10;
      if (rdStart + rdlen > b.length) return `record ${records.length}: RDLENGTH overruns`;
      if (klass === 1 && type === 1 && rdlen !== 4) return `A record with RDLENGTH ${rdlen}`;
      if (klass === 1 && type === 28 && rdlen !== 16) return `AAAA record with RDLENGTH ${rdlen}`;
      if (klass === 1) {
        const why = checkRdataNames(b, type, rdStart, rdlen);
        if (why !== null) return `record ${records.length}: ${why}`;
      }
      const rec: CheckedRecord = { section: s as 0 | 1 | 2, owner: n.name, type, klass, ttl, rdStart, rdata: Buffer.from(b.subarray(rdStart, rdStart + rdlen)) };
      if (type === 41) {
        if (s !== 2) return 'OPT outside the additional section';
        if (opt !== null) return 'two OPT records';
        if (n.name !== '.') return 'OPT not owned by the root';
        opt = rec;
      } else {
        records.push(rec);
      }
      off = rdStart + rdlen;
    }
  }
  if (off !== b.length) return `${b.length - off} trailing octets`;
  const rcode = (flags & 0xf) | (opt ? (opt.ttl >>> 24) << 4 : 0);
  return { id, flags, rcode, qdcount, questionEnd, qname, qtype, qclass, records, opt };
}

/** Like checkMessage but throws, for tests that only want the parsed reply. */
export function mustParse(buf: Uint8Array | null, what = 'reply'): CheckedMessage {
  if (buf === null) throw new Error(`no ${what}`);
  const m = checkMessage(buf);
  if (typeof m === 'string') throw new Error(`malformed ${what}: ${m}`);
  return m;
}

/** Dotted quads of the A records of a section (answer by default). */
export function aRecords(m: CheckedMessage, section: 0 | 1 | 2 = 0): string[] {
  return m.records.filter((r) => r.section === section && r.type === 1 && r.rdata.length === 4).map((r) => `${r.owner} ${[...r.rdata].join('.')}`);
}

/** End of the question of a query written without compression (the linedns upstream query). */
export function questionEndOf(buf: Uint8Array): number {
  const n = readWireName(buf, 12);
  return n === null ? -1 : n.end + 4;
}

/**
 * A reply to `query` built from its own bytes: its ID and question, QR/RA set, and the given
 * records appended (already encoded; they may point at offset 12 with c00c).
 */
export function replyTo(query: Uint8Array, opts: { rcode?: number; flags?: number; answers?: Buffer[]; authority?: Buffer[]; additional?: Buffer[]; id?: number } = {}): Buffer {
  const qEnd = questionEndOf(query);
  if (qEnd < 0) throw new Error('replyTo: unreadable question');
  const q = Buffer.from(query);
  const an = opts.answers ?? [];
  const ns = opts.authority ?? [];
  const ar = opts.additional ?? [];
  const flags = opts.flags ?? (QR | RA | (q.readUInt16BE(2) & RD) | ((opts.rcode ?? 0) & 0xf));
  return Buffer.concat([
    header({ id: opts.id ?? q.readUInt16BE(0), flags, qd: 1, an: an.length, ns: ns.length, ar: ar.length }),
    q.subarray(12, qEnd),
    ...an,
    ...ns,
    ...ar,
  ]);
}

/** A pointer to the question name (offset 12). */
export const QNAME_PTR = Buffer.from([0xc0, 0x0c]);

export function ipv4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

/** An SOA RDATA with small numbers, for negative answers. */
export function soaRdata(mname: string, rname: string, minimum: number): Buffer {
  return Buffer.concat([nameWire(mname), nameWire(rname), u32(1), u32(3600), u32(600), u32(86400), u32(minimum)]);
}
