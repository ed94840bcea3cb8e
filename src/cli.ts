#!/usr/bin/env node
// The linedns command: `serve`, `check` and `explain`, per the CLI contract in docs/operations.md.
// Flags override the config file; exit codes: 0 fine, 1 invalid config or failure, 2 usage.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import cluster from 'node:cluster';
import { ConfigError, formatIssue, sourcePlan, type CliCode, type ConfigOverrides } from './config/load.js';
import { fetchForCheck, loadForStart, type SourceSet } from './app/sources.js';
import type { SourceDocuments } from './config/sources.js';
import { Metrics } from './lib/metrics.js';
import { loadConfig } from './app/config.js';
import { createLogger, LOG_LEVELS, type Logger, type LogLevel } from './lib/logger.js';
import { formatAddress, LineDnsServer } from './app/server.js';
import type { ExplainRequest } from './app/explain.js';
import { testCommand } from './app/golden.js';
import { answerAdminRequests, autoWorkers, configFromPrimary, runPrimary, supportsReusePort, type WorkerMessage } from './app/workers.js';
import { ConfigWatcher } from './app/watch.js';
import type { RuntimeConfig } from './config/types.js';

const USAGE = `usage:
  linedns serve   [--config FILE | FILE] [--listen HOST:PORT]... [--upstream HOST[:PORT]]...
                  [--records FILE] [--smart-line FILE] [--workers N|auto] [--log-level LEVEL]
                  [--admin HOST:PORT]
  linedns check   [--config FILE | FILE]
  linedns explain NAME [TYPE] --client IP [--ecs CIDR] [--json] [--live] [--config FILE]
  linedns test    [--config FILE] [TESTS.json] [--live]
  linedns --version`;

/** The version in package.json, read at run time so a release needs no second edit. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

/** A usage error: its message and code (docs/errors.md) on one line, then the usage when it helps. */
function fail(code: CliCode, message: string, usage = false): never {
  process.stderr.write(`linedns: ${message} [${code}]\n${usage ? `${USAGE}\n` : ''}`);
  process.exit(2);
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        listen: { type: 'string', multiple: true },
        upstream: { type: 'string', multiple: true },
        records: { type: 'string' },
        'smart-line': { type: 'string' },
        workers: { type: 'string' },
        'log-level': { type: 'string' },
        admin: { type: 'string' },
        client: { type: 'string' },
        ecs: { type: 'string' },
        json: { type: 'boolean' },
        live: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'V' },
      },
    });
  } catch (err) {
    return fail('LDNS_CLI_USAGE', (err as Error).message, true);
  }
}

function overridesFrom(values: ReturnType<typeof parse>['values']): ConfigOverrides {
  const o: ConfigOverrides = {};
  if (values.listen) o.listen = values.listen;
  if (values.upstream) o.upstreams = values.upstream;
  if (values.records) o.records = values.records;
  if (values['smart-line']) o.smartLine = values['smart-line'];
  if (values.workers !== undefined) {
    // auto: one per CPU this process may use (os.availableParallelism()).
    const n = values.workers === 'auto' ? autoWorkers() : Number(values.workers);
    if (!Number.isInteger(n) || n < 1 || n > 64) fail('LDNS_CLI_BAD_VALUE', `--workers takes 1..64 or auto, not "${values.workers}"`);
    o.workers = n;
  }
  if (values.admin !== undefined) o.admin = values.admin;
  if (values['log-level'] !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(values['log-level'])) fail('LDNS_CLI_BAD_VALUE', `--log-level takes one of ${LOG_LEVELS.join(', ')}`);
    o.logLevel = values['log-level'] as LogLevel;
  }
  return o;
}

function load(file: string | null, overrides: ConfigOverrides, documents?: SourceDocuments) {
  try {
    return loadConfig(file, overrides, documents);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const i of err.issues) process.stderr.write(`${formatIssue(i)}\n`);
      process.exit(1);
    }
    throw err;
  }
}

/**
 * serve's configuration: URL sources fetched (or their last good copies), and its own golden
 * tests passed; exits 1 with the errors otherwise.
 */
async function loadToServe(file: string | null, overrides: ConfigOverrides, logger: Logger, metrics: Metrics): Promise<{ config: RuntimeConfig; sources: SourceSet }> {
  try {
    const { config, warnings, sources } = await loadForStart(file, overrides, logger, metrics);
    for (const w of warnings) logger.warn(formatIssue(w));
    return { config, sources };
  } catch (err) {
    if (err instanceof ConfigError) for (const i of err.issues) process.stderr.write(`${formatIssue(i)}\n`);
    else process.stderr.write(`linedns: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

async function serve(file: string | null, overrides: ConfigOverrides): Promise<void> {
  if (cluster.isWorker) return serveWorker();
  const logger = createLogger(sourcePlan(file, overrides).logLevel);
  const metrics = new Metrics();
  const { config, sources } = await loadToServe(file, overrides, logger, metrics);
  if (config.workers > 1) {
    runPrimary({ config, overrides, logger, sources, onReady: (addresses) => logger.info({ addresses, workers: config.workers }, `linedns ready on ${addresses.join(' ')}`) });
    return;
  }
  const server = await startOrExit(config, logger, overrides, { metrics, sources });
  handleSignals(server, logger);
  // A file watch and SIGHUP ask for the same reload; after one, the files to watch may differ.
  const watcher = new ConfigWatcher(() => void reload());
  const reload = async (): Promise<void> => {
    await server.reloadFromFile();
    if (server.config.watch) watcher.follow(server.config);
    else watcher.stop();
  };
  if (config.watch) watcher.follow(config);
  process.on('SIGHUP', () => void reload());
  // Ready only once the signal handlers are in place, so a supervisor's signal is never lost.
  const addresses = server.addresses.map(formatAddress);
  logger.info({ addresses }, `linedns ready on ${addresses.join(' ')}`);
}

/** A --workers worker: serves the primary's last good configuration and never reads the files. */
async function serveWorker(): Promise<void> {
  let server: LineDnsServer | undefined;
  let logger: Logger | undefined;
  let early: RuntimeConfig | undefined;
  let applying = Promise.resolve(true);
  // The primary reloads and sends the result; a worker must not die of a SIGHUP sent to the
  // whole process group, not even while it waits for its first configuration.
  process.on('SIGHUP', () => logger?.debug('SIGHUP ignored in a worker: the primary reloads the configuration'));
  const config = await configFromPrimary((next) => {
    if (server === undefined) early = next;
    else applying = applying.then(() => server!.applyReloaded(next));
  });
  logger = createLogger(config.logLevel);
  server = await startOrExit(config, logger, {}, { worker: true, reusePort: supportsReusePort() });
  answerAdminRequests(server);
  if (early) applying = applying.then(() => server!.applyReloaded(early!));
  handleSignals(server, logger);
  process.send?.({ type: 'linedns-ready', addresses: server.addresses.map(formatAddress) } satisfies WorkerMessage);
}

async function startOrExit(config: RuntimeConfig, logger: Logger, overrides: ConfigOverrides, role: { worker?: boolean; reusePort?: boolean; metrics?: Metrics; sources?: SourceSet } = {}): Promise<LineDnsServer> {
  try {
    return await LineDnsServer.start(config, { logger, overrides, ...role });
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'cannot start');
    process.exit(1);
  }
}

function handleSignals(server: LineDnsServer, logger: Logger): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    void server.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function check(file: string | null, overrides: ConfigOverrides): Promise<void> {
  // URL sources are fetched as serve would fetch them, and validated the same way.
  const { config, warnings } = load(file, overrides, await fetchForCheck(file, overrides, createLogger('silent')));
  for (const w of warnings) process.stderr.write(`${formatIssue(w)}\n`);
  process.stdout.write(
    `${config.file ?? '(defaults)'}: valid: ${config.records.length} records, ${Object.keys(config.smartLine).length} lines, ` +
      `${config.upstreams.length} upstreams, ${config.routes.length > 0 ? `${config.routes.length} routes, ` : ''}pipeline ${config.pipeline.map((e) => e.stage).join(' -> ')}\n`,
  );
}

/** Runs one query through the configured pipeline in-process, tracing each stage. */
async function explainCommand(file: string | null, overrides: ConfigOverrides, request: ExplainRequest, json: boolean): Promise<void> {
  // Loaded here, not with the CLI: dns-packet and the rest cost `serve` several MB it never uses.
  const { checkRequest, explain, ExplainError, formatExplanation } = await import('./app/explain.js');
  try {
    checkRequest(request);
  } catch (err) {
    if (err instanceof ExplainError) fail('LDNS_CLI_BAD_VALUE', err.message);
    throw err;
  }
  const { config } = load(file, overrides, await fetchForCheck(file, overrides, createLogger('silent')));
  const e = await explain(config, request);
  process.stdout.write(json ? `${JSON.stringify(e, null, 2)}\n` : formatExplanation(e));
  process.exit(0);
}

async function main(): Promise<void> {
  const { values, positionals } = parse(process.argv.slice(2));
  const [command, ...rest] = positionals;
  if (values.version) {
    process.stdout.write(`linedns ${version()}\n`);
    process.exit(0);
  }
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    process.exit(command === undefined && !values.help ? 2 : 0);
  }
  const overrides = overridesFrom(values);
  // `check FILE` reads as "check this file"; running on defaults instead would report a file
  // that was never read as valid.
  const configPath = (): string | null => {
    if (rest.length > 1) fail('LDNS_CLI_USAGE', `unexpected argument "${rest[1]}": ${command} takes one config file`, true);
    if (rest.length === 1 && values.config !== undefined) fail('LDNS_CLI_USAGE', `the config file is given twice ("${rest[0]}" and --config "${values.config}"): give one`, true);
    return rest[0] ?? values.config ?? null;
  };
  switch (command) {
    case 'serve':
      return serve(configPath(), overrides);
    case 'check':
      return check(configPath(), overrides);
    case 'explain':
      if (rest.length > 2) fail('LDNS_CLI_USAGE', `unexpected argument "${rest[2]}": explain takes NAME and an optional TYPE`, true);
      if (rest.length < 1 || !values.client) fail('LDNS_CLI_USAGE', 'explain needs NAME and --client IP', true);
      return explainCommand(values.config ?? null, overrides, { name: rest[0]!, type: rest[1] ?? 'A', client: values.client!, ecs: values.ecs, live: values.live === true }, values.json === true);
    case 'test':
      if (rest.length > 1) fail('LDNS_CLI_USAGE', `unexpected argument "${rest[1]}": test takes one tests file`, true);
      return process.exit(await testCommand({ configFile: values.config ?? null, testsFile: rest[0] ?? null, live: values.live === true }, (s) => process.stdout.write(s), (s) => process.stderr.write(s)));
    default:
      fail('LDNS_CLI_USAGE', `unknown command "${command}"`, true);
  }
}

void main();
