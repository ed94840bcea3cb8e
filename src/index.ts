// The public API of linedns for embedding and for writing stages: types of the stage contract,
// the server, the config loader and the DNS constants a stage needs.

export type { Stage, StageDefinition, StageEnv, StageFactory, Next, ReplyInfo, OptionsSpec, Requirement } from './core/stage.js';
export { QueryContext, type ClientInfo, type Transport, type ReplyHook, type Slots, type SubAnswer } from './core/context.js';
export type { ParsedQuery, EdnsInfo, ClientSubnet } from './lib/dns/query.js';
export { Rcode, QType, QClass, Flag, typeFromName, typeName } from './lib/dns/constants.js';
export { ConfigError, formatIssue, CONFIG_CODES, type ConfigCode, type ConfigIssue, type ConfigOverrides } from './config/load.js';
export { loadConfig } from './app/config.js';
export { explain, formatExplanation, type Explanation, type ExplainRequest } from './app/explain.js';
export type { RuntimeConfig, PipelineEntry } from './config/types.js';
export { LineDnsServer, formatAddress, type BoundAddress } from './app/server.js';
export { Metrics, type Counter } from './lib/metrics.js';
export { createLogger, silentLogger } from './lib/logger.js';
