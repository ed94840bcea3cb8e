// Ports for tests that need one chosen ahead: a daemon's or a linedns's fixed listening port, or
// a port with nothing bound, whose datagrams draw ICMP port unreachable.

import dgram from 'node:dgram';
import net from 'node:net';

/**
 * A loopback port free for both UDP and TCP right now (daemons and linedns instances need a
 * fixed port in their config, and bind both). Another process may still take it before the
 * daemon binds: callers retry. Until someone does, nothing is bound there, so datagrams to it
 * draw ICMP port unreachable.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => resolve(udp.address().port));
    });
    const tcp = net.createServer();
    const tcpOk = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, host, () => resolve(true));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (tcpOk) {
      await new Promise<void>((r) => tcp.close(() => r()));
      return port;
    }
  }
  throw new Error('no free loopback port for UDP and TCP after 20 attempts');
}
