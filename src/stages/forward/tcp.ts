// One query over TCP to an upstream (after TC=1, or for "protocol": "tcp" upstreams):
// two-octet length framing (RFC 1035 4.2.2), bounded by a timeout, connection closed after.
// A frame with our ID that is unusable ends the query at once: on our own connection it can
// only be the upstream's (a frame with another ID is skipped).

import net from 'node:net';
import { frame } from '../../lib/dns/framing.js';
import { randomU16 } from './random.js';
import type { Accept } from './udp.js';

export function tcpQuery<T>(query: Buffer, host: string, port: number, timeoutMs: number, accept: Accept<T>): Promise<T | null> {
  return new Promise((resolve) => {
    const id = randomU16();
    query.writeUInt16BE(id, 0);
    let done = false;
    let buffered: Buffer = Buffer.alloc(0);
    const socket = net.connect({ host, port });
    const finish = (v: T | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.on('error', () => finish(null));
    socket.on('close', () => finish(null));
    socket.on('connect', () => socket.write(frame(query)));
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const len = buffered.readUInt16BE(0);
        if (buffered.length < len + 2) return;
        const msg = buffered.subarray(2, len + 2);
        buffered = buffered.subarray(len + 2);
        if (msg.length >= 12 && msg.readUInt16BE(0) === id) {
          let accepted: T | null = null;
          try {
            accepted = accept(msg);
          } catch {
            accepted = null;
          }
          return finish(accepted);
        }
      }
    });
  });
}
