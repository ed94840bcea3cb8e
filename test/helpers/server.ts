// Starts linedns in-process for a test: config files written to a temp dir (so paths, schemas
// and semantic checks are the real ones), listening on 127.0.0.1 port 0, loopback upstreams only.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/app/config.js';
import { silentLogger } from '../../src/lib/logger.js';
import type { RuntimeConfig } from '../../src/config/types.js';
import { LineDnsServer } from '../../src/app/server.js';
import { TestUpstream, type UpstreamHandler } from './upstream.js';

export interface TestFiles {
  /** linedns.json content; `listen` defaults to 127.0.0.1:0. */
  config?: Record<string, unknown>;
  records?: unknown[];
  smartLine?: Record<string, string[]>;
  /** Extra files (name -> content) written beside the config, e.g. a user stage module. */
  extra?: Record<string, string>;
}

export interface Running {
  server: LineDnsServer;
  port: number;
  dir: string;
  configFile: string;
  close(): Promise<void>;
}

export function writeConfig(files: TestFiles): { dir: string; configFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'linedns-test-'));
  const config: Record<string, unknown> = { listen: ['127.0.0.1:0'], ...files.config };
  if (files.records) {
    writeFileSync(join(dir, 'records.json'), JSON.stringify(files.records, null, 2));
    config.records ??= 'records.json';
  }
  if (files.smartLine) {
    writeFileSync(join(dir, 'smart-line.json'), JSON.stringify(files.smartLine, null, 2));
    config.smartLine ??= 'smart-line.json';
  }
  for (const [name, content] of Object.entries(files.extra ?? {})) writeFileSync(join(dir, name), content);
  if (!config.upstreams) throw new Error('test configs must name a loopback upstream');
  const configFile = join(dir, 'linedns.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  return { dir, configFile };
}

export async function startLineDns(files: TestFiles): Promise<Running> {
  const { dir, configFile } = writeConfig(files);
  const { config } = loadConfig(configFile);
  const server = await LineDnsServer.start(config, { logger: silentLogger() });
  return { server, port: server.port, dir, configFile, close: () => server.close() };
}

/** Fails instead of hanging when a close never completes (a connection left open keeps it waiting). */
export async function bounded(p: Promise<void>, what: string, ms = 5000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not close within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([p, limit]);
  } finally {
    clearTimeout(timer);
  }
}


/** The options a loaded config gives the stage `name` (its first entry), as the stage gets them. */
export function stageOptions<T>(config: RuntimeConfig, name: string): T | undefined {
  return config.pipeline.find((e) => e.stage === name)?.options as T | undefined;
}

/**
 * A loopback upstream answering with `handler`, and linedns started with `files` (its `config`
 * given the upstream, which it may override); `body` runs with both, which are closed (bounded)
 * however it ends.
 */
export async function withUpstream(handler: UpstreamHandler, files: TestFiles, body: (ld: Running, up: TestUpstream) => Promise<void>): Promise<void> {
  const up = await TestUpstream.start(handler);
  try {
    const ld = await startLineDns({ ...files, config: { upstreams: [up.address], ...files.config } });
    try {
      await body(ld, up);
    } finally {
      await bounded(ld.close(), 'linedns');
    }
  } finally {
    await bounded(up.close(), 'the upstream');
  }
}

/** The same for a whole test: both are closed (bounded) when `t` ends. */
export async function startWithUpstream(t: { after(fn: () => Promise<void>): void }, handler: UpstreamHandler, files: TestFiles): Promise<{ ld: Running; up: TestUpstream }> {
  const up = await TestUpstream.start(handler);
  const ld = await startLineDns({ ...files, config: { upstreams: [up.address], ...files.config } });
  t.after(async () => {
    await bounded(ld.close(), 'linedns');
    await bounded(up.close(), 'the upstream');
  });
  return { ld, up };
}
