// EDNS options linedns adds to the OPT record it writes last in a reply (RFC 6891): the one way to
// append one, used by Client Subnet (RFC 7871, ecs.ts) and Extended DNS Errors (RFC 8914, here).

import { EdnsOption, HEADER_SIZE, QType } from './constants.js';
import { scanMessage } from './message.js';

/** Length of an OPT record with no options, as linedns writes it last in every reply to an EDNS query. */
const BARE_OPT = 11;

/**
 * Where the RDLENGTH of `reply`'s OPT record sits, when the OPT is the reply's last record and
 * `size` more octets of options fit in it; -1 otherwise (no OPT, or one elsewhere: a user
 * stage's reply). linedns's own OPT, last and bare, is found without a scan.
 */
export function optRdLengthAt(reply: Buffer, size: number): number {
  const n = reply.length;
  if (n >= HEADER_SIZE + BARE_OPT && (reply[10]! | reply[11]!) !== 0 && reply[n - 11] === 0 && ((reply[n - 10]! << 8) | reply[n - 9]!) === QType.OPT && reply[n - 2] === 0 && reply[n - 1] === 0) {
    return n - 2;
  }
  const scan = scanMessage(reply);
  if (typeof scan === 'string' || scan.opt < 0 || scan.opt !== scan.records.length - 1) return -1;
  const r = scan.records[scan.opt]!;
  if (r.rdStart + r.rdLength !== n || r.rdLength + size > 0xffff) return -1;
  return r.rdStart - 2;
}

/**
 * A copy of `reply` with `size` octets more at its end, the OPT RDLENGTH at `rdLengthAt`
 * (optRdLengthAt) grown by them: the caller writes the option at `reply.length`.
 */
export function growOpt(reply: Buffer, rdLengthAt: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(reply.length + size);
  out.set(reply, 0);
  out.writeUInt16BE(out.readUInt16BE(rdLengthAt) + size, rdLengthAt);
  return out;
}

/** The Extended DNS Error INFO-CODEs linedns gives (RFC 8914 section 4). */
export const EdeCode = { STALE_ANSWER: 3, NO_REACHABLE_AUTHORITY: 22 } as const;

/**
 * The reply with an Extended DNS Error option (RFC 8914) of `infoCode`, without EXTRA-TEXT,
 * added to its OPT; as it is when it has no OPT last (a client without EDNS gets none: RFC 8914 3).
 */
export function withEdeOption(reply: Buffer, infoCode: number): Buffer {
  const at = optRdLengthAt(reply, 6);
  if (at < 0) return reply;
  const out = growOpt(reply, at, 6);
  const o = reply.length;
  out.writeUInt16BE(EdnsOption.EDE, o);
  out.writeUInt16BE(2, o + 2);
  out.writeUInt16BE(infoCode, o + 4);
  return out;
}
