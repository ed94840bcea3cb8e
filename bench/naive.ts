// The naive Node server: dns-packet decode and encode on every packet, as most Node DNS servers
// do. It answers an A record itself, or with --forward relays (decoding and re-encoding both ways).

import dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import dnsPacket from 'dns-packet';

const { values } = parseArgs({ options: { port: { type: 'string' }, forward: { type: 'string' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: naive --port N [--forward HOST:PORT]');

const socket = dgram.createSocket('udp4');

function decode(msg: Buffer): dnsPacket.DecodedPacket | null {
  try {
    return dnsPacket.decode(msg);
  } catch {
    return null;
  }
}

if (values.forward === undefined) {
  socket.on('message', (msg, rinfo) => {
    const q = decode(msg);
    const question = q?.questions?.[0];
    if (!q || !question || rinfo.port === 0) return;
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [question],
      answers: [{ type: 'A', name: question.name, ttl: 3600, data: '192.0.2.1' }],
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
} else {
  const [host, portText] = values.forward.split(':');
  const upPort = Number(portText);
  const upstream = dgram.createSocket('udp4');
  const pending = new Map<number, { id: number; port: number; address: string }>();
  let nextId = 0;
  socket.on('message', (msg, rinfo) => {
    const q = decode(msg);
    if (!q || !q.questions?.length || rinfo.port === 0) return;
    const id = nextId;
    nextId = (nextId + 1) & 0xffff;
    pending.set(id, { id: q.id ?? 0, port: rinfo.port, address: rinfo.address });
    upstream.send(dnsPacket.encode({ ...q, id }), upPort, host);
  });
  upstream.on('message', (msg) => {
    const r = decode(msg);
    if (!r || r.id === undefined) return;
    const client = pending.get(r.id);
    if (!client) return;
    pending.delete(r.id);
    socket.send(dnsPacket.encode({ ...r, id: client.id }), client.port, client.address);
  });
  upstream.bind(0, '127.0.0.1');
}

socket.bind(port, '127.0.0.1');
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
