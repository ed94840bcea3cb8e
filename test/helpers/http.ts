// HTTP to the admin endpoint as a scraper or an operator would ask it, and reading one sample
// out of Prometheus text: shared by the admin, workers and sources tests.

import { request } from 'node:http';

export interface HttpReply {
  status: number;
  body: string;
}

/** One request on a fresh connection (no agent: nothing kept open past the test). */
export function http(port: number, path: string, opts: { method?: string; from?: string } = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', localAddress: opts.from, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample of Prometheus text (`name` with its labels, if any, as printed). */
export function sample(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (line.slice(0, i) === name) return Number(line.slice(i + 1));
  }
  return undefined;
}
