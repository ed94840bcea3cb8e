// Forwarding loops met at run time: two linedns instances on loopback forwarding to each other.
// The loop probe must find it, log it once naming the upstream, and turn queries into quick SERVFAILs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { loadConfig } from '../src/app/config.js';
import { LineDnsServer } from '../src/app/server.js';
import { freePort } from './helpers/ports.js';
import { bounded, writeConfig } from './helpers/server.js';
import { udpExchange } from './helpers/client.js';
import { mustParse, rawQuery } from './helpers/packets.js';

const A_HOST = '127.0.0.81';
const B_HOST = '127.0.0.82';
const SERVFAIL = 2;

interface Instance {
  server: LineDnsServer;
  /** Log lines (pino JSON) at level info and above. */
  logs: { level: number; msg: string; upstream?: string }[];
}

async function start(host: string, port: number, upstream: string): Promise<Instance> {
  const { configFile } = writeConfig({ config: { listen: [`${host}:${port}`], upstreams: [upstream] } });
  const { config } = loadConfig(configFile);
  const logs: Instance['logs'] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Instance['logs'][number]) });
  return { server: await LineDnsServer.start(config, { logger }), logs };
}

async function ask(host: string, port: number, name: string): Promise<{ rcode: number; ms: number }> {
  const t0 = performance.now();
  const m = mustParse(await udpExchange(port, rawQuery(name, 1, { id: 9 }), { to: host, timeoutMs: 5000 }), name);
  return { rcode: m.rcode, ms: performance.now() - t0 };
}

async function waitFor(check: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end && !check()) await new Promise((r) => setTimeout(r, 10));
  return check();
}

const loopLogs = (i: Instance): Instance['logs'] => i.logs.filter((l) => l.msg.startsWith('forwarding loop:'));

test('two instances forwarding to each other: the loop is found, logged once, and queries get SERVFAIL quickly', { timeout: 30_000 }, async (t) => {
  // Ports chosen ahead, so each config can name the other; A starts first, when B is not there
  // yet (its probe draws ICMP unreachable and finds nothing), then B, whose probe goes round.
  const aPort = await freePort(A_HOST);
  const bPort = await freePort(B_HOST);
  let a: Instance | null = null;
  let b: Instance | null = null;
  try {
    a = await start(A_HOST, aPort, `${B_HOST}:${bPort}`);
    b = await start(B_HOST, bPort, `${A_HOST}:${aPort}`);
    const found = await waitFor(() => loopLogs(a!).length + loopLogs(b!).length > 0, 3000);
    assert.ok(found, 'no forwarding loop was logged');
    assert.deepEqual(loopLogs(a).map((l) => l.upstream), [], 'A logged a loop: its probe went out before B existed');
    assert.deepEqual(loopLogs(b).map((l) => l.upstream), [`${A_HOST}:${aPort}`]);

    // The default 2 s forward.timeout: without the detector each of these would go round the
    // loop until the timeouts ran out.
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      for (const [host, port] of [[A_HOST, aPort], [B_HOST, bPort]] as const) {
        const { rcode, ms } = await ask(host, port, `q${i}.loop.example`);
        assert.equal(rcode, SERVFAIL);
        times.push(ms);
      }
    }
    t.diagnostic(`SERVFAIL latency through the loop: max ${Math.max(...times).toFixed(1)} ms over ${times.length} queries`);
    assert.ok(Math.max(...times) < 1000, `SERVFAIL after ${Math.max(...times).toFixed(0)} ms`);
    assert.ok(b.server.metrics.get('forward_loop_queries_total') >= 1);

    // A reload probes again and meets the loop again: still one log line, and still SERVFAIL.
    await b.server.apply(b.server.config);
    await a.server.apply(a.server.config);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(loopLogs(b).length, 1, 'the loop was logged again');
    assert.equal((await ask(A_HOST, aPort, 'after-reload.loop.example')).rcode, SERVFAIL);
  } finally {
    if (a) await bounded(a.server.close(), 'linedns A');
    if (b) await bounded(b.server.close(), 'linedns B');
  }
});
