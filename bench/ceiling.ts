// The bare Node ceiling: a dgram server that copies the query ID into a prebuilt reply (or, with
// --forward, relays queries to an upstream by ID alone). No DNS server in Node can beat it with
// dgram's defaults; --literal-lookup gives it the send-side shortcut linedns takes (see below).

import dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { answerTail } from './net.js';

const { values } = parseArgs({ options: { port: { type: 'string' }, forward: { type: 'string' }, 'literal-lookup': { type: 'boolean' } } });
const port = Number(values.port);
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: ceiling --port N [--forward HOST:PORT] [--literal-lookup]');

// dgram resolves the address of every send() with dns.lookup, which re-checks the IP literal and
// defers the send by a tick. linedns passes a lookup that hands the literal back
// (src/lib/net/literal-lookup.ts); this flag gives the ceiling the same, to show what is left.
const options: dgram.SocketOptions = { type: 'udp4' };
if (values['literal-lookup'] === true) options.lookup = (address, _family, callback) => callback(null, address, 4);
const socket = dgram.createSocket(options);

if (values.forward === undefined) {
  // One reply for every query: dnsperf matches replies by ID only, so this is the floor of what
  // a server must do per packet (receive, one small copy, send).
  const question = Buffer.from([2, 0x6e, 0x30, 5, ...Buffer.from('bench'), 4, ...Buffer.from('test'), 0, 0, 1, 0, 1]);
  const header = Buffer.from([0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
  const prebuilt = Buffer.concat([header, question, answerTail('192.0.2.1', 3600)]);
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12 || rinfo.port === 0) return;
    const out = Buffer.allocUnsafe(prebuilt.length);
    prebuilt.copy(out);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    socket.send(out, rinfo.port, rinfo.address);
  });
} else {
  // Forwarding ceiling: a fresh ID per upstream query and a table back to the client; no parsing
  // and no checks beyond the ID, so it bounds what a Node forwarder can reach.
  const [host, portText] = values.forward.split(':');
  const upPort = Number(portText);
  const upstream = dgram.createSocket(options);
  const clientPort = new Uint16Array(65536);
  const clientId = new Uint16Array(65536);
  const clientAddr: string[] = new Array<string>(65536).fill('');
  let nextId = 0;
  socket.on('message', (msg, rinfo) => {
    if (msg.length < 12 || rinfo.port === 0) return;
    const id = nextId;
    nextId = (nextId + 1) & 0xffff;
    clientPort[id] = rinfo.port;
    clientAddr[id] = rinfo.address;
    clientId[id] = msg.readUInt16BE(0);
    msg.writeUInt16BE(id, 0);
    upstream.send(msg, upPort, host);
  });
  upstream.on('message', (msg) => {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = clientPort[id]!;
    if (p === 0) return;
    clientPort[id] = 0;
    msg.writeUInt16BE(clientId[id]!, 0);
    socket.send(msg, p, clientAddr[id]);
  });
  upstream.bind(0, '127.0.0.1');
}

socket.bind(port, '127.0.0.1');
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
