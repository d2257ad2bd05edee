/**
 * The policy pipeline: parse (YAML with positions) → validate (every problem
 * at once) → plan (pure DesiredState). The units parser is shared with the
 * rest of the agent.
 */
export { loadPolicyFile, readPolicyText } from './load.js';
export { parsePolicy, type ParsedPolicy, type Position } from './parse.js';
export { bucketsOfRule, planPolicy, replanRule } from './plan.js';
export { RuleIndex, validateOne } from './incremental.js';
export { policyJsonSchema } from './schema.js';
export type { ApiSettings, MetricsSettings, PolicyEnv, PolicyInterface, PolicyRule, RuleDirection, RuleProtocol, ValidPolicy } from './types.js';
export {
  DEFAULT_BURST,
  formatRate,
  MAX_BURST_NS,
  MAX_RATE_BPS,
  MIN_BURST_BYTES,
  MIN_RATE_BPS,
  parseBurst,
  parseDuration,
  parseRate,
  parseSize,
  UnitError,
} from './units.js';
export { bucketCount, validatePolicy, type ValidationResult } from './validate.js';
