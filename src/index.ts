// The public API of linedns for embedding and for writing stages: types of the stage contract,
// the server, the config loader and the DNS constants a stage needs.

export type { Stage, StageEnv, StageFactory, Next } from './pipeline/stage.js';
export { QueryContext, type ClientInfo, type Transport } from './pipeline/context.js';
export type { ParsedQuery, EdnsInfo, ClientSubnet } from './dns/query.js';
export { Rcode, QType, QClass, Flag, typeFromName, typeName } from './dns/constants.js';
export { loadConfig, ConfigError, formatIssue, type ConfigIssue, type ConfigOverrides } from './config/load.js';
export type { RuntimeConfig } from './config/types.js';
export { LineDnsServer, formatAddress, type BoundAddress } from './server/server.js';
export { Metrics, type Counter } from './metrics/metrics.js';
export { createLogger, silentLogger } from './log/logger.js';
