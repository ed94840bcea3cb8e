// DNS over TCP framing (RFC 1035 4.2.2): every message is preceded by its two-octet length.
// Shared by the TCP transport and the upstream TCP client.

/** The message with its length prefix, in one buffer so it goes out in one write. */
export function frame(msg: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(msg.length + 2);
  framed.writeUInt16BE(msg.length, 0);
  framed.set(msg, 2);
  return framed;
}
