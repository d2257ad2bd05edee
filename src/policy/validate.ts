/**
 * Step 2 of the policy pipeline: a parsed document → a ValidPolicy, or every
 * problem found, each at its file:line:column. The key table (schema.ts)
 * drives the key, type and enum checks; this module adds what crosses keys:
 * defaults, port ranges, names, interfaces, overlaps and data-plane capacity.
 */
import { isIP } from 'node:net';
import type { Diagnostic } from '../errors.js';
import type { Protocol, Side } from '../kernel/desired.js';
import { PS } from '../kernel/layout.js';
import { findOverlaps, type PortClaim } from './overlap.js';
import type { ParsedPolicy } from './parse.js';
import { assignProfiles } from './profiles.js';
import { POLICY_SPEC, RULE_KEYS } from './schema.js';
import { childPath, Findings, shapeDocument } from './shape.js';
import { suggestion } from './suggest.js';
import type { ApiSettings, ClientLimit, MetricsSettings, PolicyEnv, PolicyInterface, PolicyRule, RuleDirection, RuleMode, RuleProtocol, ValidPolicy } from './types.js';
import {
  DEFAULT_BURST,
  DEFAULT_HORIZON,
  DEFAULT_SHAPE_BURST,
  effectiveHorizonNs,
  formatDuration,
  formatRate,
  MAX_HORIZON_NS,
  parseBurst,
  parseConnectionRate,
  parseDuration,
  parsePacketRate,
  parseRate,
  UnitError,
} from './units.js';

/**
 * HTB class minors 1..0xFFFE but 0x5053: one per shaped bucket (class ids are
 * 16-bit; 0 is the qdisc, 0xFFFF is left alone, and minor 0x5053's leaf queue
 * would need the handle of our root, 5053:).
 */
export const MAX_SHAPED_BUCKETS = 0xfffe - 1;

/** The outcome of validation: a policy when there are no errors, and every diagnostic (errors and warnings). */
export interface ValidationResult {
  policy?: ValidPolicy;
  diagnostics: Diagnostic[];
}

/** Validates a parsed policy, reporting every problem at once; env answers questions about the host. */
export function validatePolicy(parsed: ParsedPolicy, env: PolicyEnv): ValidationResult {
  const findings = new Findings(parsed);
  // The shape pass has checked every present value against POLICY_SPEC, so these casts only name what it let through.
  const raw = shapeDocument(parsed, POLICY_SPEC, findings) as RawPolicy;
  const interfaces = checkInterfaces(raw.interfaces ?? [], env, findings);
  const api = checkApi(raw.api ?? {}, findings);
  const metrics = checkMetrics(raw.metrics ?? {}, findings);
  const rules = checkRules(raw.rules ?? [], raw.defaults ?? {}, interfaces, findings);
  checkAcrossRules(rules, interfaces, findings);
  const diagnostics = sortByPosition([...parsed.diagnostics, ...findings.diagnostics]);
  if (diagnostics.some((d) => d.severity === 'error') || api === undefined || metrics === undefined) return { diagnostics };
  const policy: ValidPolicy = {
    pinDir: raw.pinDir ?? String(POLICY_SPEC.keys?.pinDir?.default),
    clientTable: raw.clientTable ?? Number(POLICY_SPEC.keys?.clientTable?.default),
    interfaces,
    api,
    metrics,
    rules: rules.flatMap((r) => (r.rule ? [r.rule] : [])),
  };
  return { policy, diagnostics };
}

interface RawInterface {
  name?: string;
  ingress?: boolean;
  egress?: boolean;
  qdisc?: 'keep' | 'replace';
  countUnmatched?: boolean;
}

interface RawApi {
  listen?: string;
  tokenFile?: string;
  readsOpen?: boolean;
  tls?: { cert?: string; key?: string };
}

interface RawMetrics {
  listen?: string;
  maxRules?: number;
}

interface RawRule {
  name?: string;
  port?: number | string;
  protocol?: RuleProtocol;
  direction?: RuleDirection;
  side?: Side;
  rate?: string;
  burst?: string;
  mode?: RuleMode | 'enforce';
  ecn?: string | boolean;
  horizon?: string;
  pps?: string;
  connections?: string;
  client?: RawClient;
  interfaces?: string[];
  buckets?: 'shared' | 'per-port';
}

interface RawClient {
  rate?: string;
  burst?: string;
  pps?: string;
  connections?: string;
  ipv6Prefix?: number;
}

interface RawPolicy {
  pinDir?: string;
  clientTable?: number;
  interfaces?: (RawInterface | undefined)[];
  api?: RawApi;
  metrics?: RawMetrics;
  defaults?: RawRule;
  rules?: (RawRule | undefined)[];
}

/**
 * A rule as far as it could be checked: `claim` when its ports and scope are
 * sound (for cross-rule checks), `rule` when nothing about it is wrong.
 */
interface CheckedRule {
  index: number;
  name: string;
  line: number;
  scope?: string[];
  claim?: PortClaim;
  buckets: number;
  /** Buckets that shape, each needing an HTB class. */
  shaped: number;
  rule?: PolicyRule;
}

function checkInterfaces(raw: (RawInterface | undefined)[], env: PolicyEnv, findings: Findings): PolicyInterface[] {
  const out: PolicyInterface[] = [];
  const lineOf = new Map<string, number>();
  raw.forEach((item, i) => {
    const path = childPath('interfaces', i);
    const name = item?.name;
    if (item === undefined || name === undefined) return;
    const namePath = childPath(path, 'name');
    const at = findings.valueAt(namePath);
    const first = lineOf.get(name);
    if (first !== undefined) {
      findings.error(namePath, at, `${namePath}: "${name}" is already listed at line ${first}; list each interface once`, 'duplicate');
      return;
    }
    lineOf.set(name, at.line);
    if (!env.interfaceExists(name)) {
      findings.warning(namePath, at, `${namePath}: interface "${name}" does not exist (yet); the agent will attach when it appears`);
    }
    const iface = { name, ingress: item.ingress ?? true, egress: item.egress ?? true, replaceQdisc: item.qdisc === 'replace', countUnmatched: item.countUnmatched ?? false };
    if (!iface.ingress && !iface.egress) {
      findings.warning(
        path,
        findings.valueAt(path),
        `${path}: ingress and egress are both false, so nothing is attached to "${name}"; enable one or remove the interface`,
      );
    }
    out.push(iface);
  });
  return out;
}

function checkApi(raw: RawApi, findings: Findings): ApiSettings | undefined {
  const apiKeys = POLICY_SPEC.keys?.api?.keys ?? {};
  const listenText = raw.listen ?? String(apiKeys.listen?.default);
  const listen = parseListen(listenText);
  if (typeof listen === 'string') {
    findings.error('api.listen', findings.valueAt('api.listen'), `api.listen: ${listen}`, 'pattern');
    return undefined;
  }
  const { cert, key } = raw.tls ?? {};
  return {
    listen,
    tokenFile: raw.tokenFile ?? String(apiKeys.tokenFile?.default),
    readsOpen: raw.readsOpen ?? true,
    ...(cert !== undefined && key !== undefined ? { tls: { cert, key } } : {}),
  };
}

function checkMetrics(raw: RawMetrics, findings: Findings): MetricsSettings | undefined {
  const maxRules = raw.maxRules ?? Number(POLICY_SPEC.keys?.metrics?.keys?.maxRules?.default);
  if (raw.listen === undefined) return { maxRules };
  const listen = parseListen(raw.listen);
  if (typeof listen === 'string') {
    findings.error('metrics.listen', findings.valueAt('metrics.listen'), `metrics.listen: ${listen}`, 'pattern');
    return undefined;
  }
  return { listen, maxRules };
}

/** host:port (the key table checked the outline) → parts, or what is wrong with it. */
export function parseListen(text: string): { host: string; port: number } | string {
  const cut = text.lastIndexOf(':');
  const hostText = text.slice(0, cut);
  const port = Number(text.slice(cut + 1));
  if (!(port >= 1 && port <= 65535)) return `port ${text.slice(cut + 1)} in "${text}" is out of range 1..65535`;
  if (hostText.startsWith('[')) {
    const host = hostText.slice(1, -1);
    return isIP(host) === 6 ? { host, port } : `"${host}" in "${text}" is not an IPv6 address`;
  }
  if (/^[0-9.]+$/.test(hostText) && isIP(hostText) !== 4) return `"${hostText}" in "${text}" is not an IPv4 address`;
  return { host: hostText, port };
}

function checkRules(
  raw: (RawRule | undefined)[],
  defaults: RawRule,
  interfaces: PolicyInterface[],
  findings: Findings,
): CheckedRule[] {
  const known = interfaces.map((i) => i.name);
  const names = new Map<string, { line: number; derived: boolean }>();
  return raw.flatMap((item, index) => {
    if (item === undefined) return [];
    const path = childPath('rules', index);
    const line = findings.itemLine('rules', index);
    const ports = checkPorts(item, path, findings);
    const scope = checkScope(item.interfaces, known, path, findings);
    const rateBps = checkRate(item, defaults, path, findings);
    // Everything a claim needs is settled: later findings (burst, name) do not change which ports it takes.
    const sound = findings.isClean(path);
    const bursts = rateBps === undefined ? undefined : checkBurst(item, defaults, rateBps, path, findings);
    const ecnNs = checkEcn(item, defaults, path, findings);
    const horizonNs = checkHorizon(item, defaults, path, findings);
    const events = checkEvents(item, defaults, path, findings);
    const client = checkClient(item, defaults, path, findings);
    if (ports === undefined) return [];
    const protocol = item.protocol ?? defaults.protocol ?? defaultOf<RuleProtocol>('protocol');
    const direction = item.direction ?? defaults.direction ?? defaultOf<RuleDirection>('direction');
    const side = item.side ?? defaults.side ?? defaultOf<Side>('side');
    const name = checkName(item, protocol, ports, path, line, names, findings);
    if (name === undefined) return [];
    const perPort = ports.range && (item.buckets ?? defaults.buckets ?? defaultOf('buckets')) === 'per-port';
    const written = item.mode ?? defaults.mode ?? defaultOf<RuleMode>('mode');
    const mode: RuleMode = written === 'enforce' ? 'police' : written;
    if (item.mode === 'shape' && direction === 'ingress') {
      const modePath = childPath(path, 'mode');
      findings.warning(
        modePath,
        findings.valueAt(modePath),
        `${modePath}: ingress has no queue to shape in, so this rule polices (drops over the limit); limit the ` +
          `sender's egress to shape, or write mode: police to say so`,
      );
    }
    const directions = direction === 'both' ? (['ingress', 'egress'] as const) : [direction];
    const protocols: Protocol[] = protocol === 'any' ? ['tcp', 'udp'] : [protocol];
    checkConnectionScope(item, defaults, client, protocol, direction, path, findings);
    // Built by assignment, not by spreading optional parts: this runs once per rule of a 65,536-rule file.
    const checked: CheckedRule = { index, name, line, ...bucketCount({ ...ports, perPort, direction, mode, rateBps }) };
    if (scope) checked.scope = scope;
    if (sound) checked.claim = { from: ports.from, to: ports.to, protocols, directions, side };
    if (rateBps === undefined || bursts === undefined || horizonNs === undefined || !findings.isClean(path)) return [checked];
    const rule: PolicyRule = {
      name,
      from: ports.from,
      to: ports.to,
      protocol,
      direction,
      side,
      rateBps,
      burstNs: bursts.burstNs,
      shapeBurstNs: bursts.shapeBurstNs,
      mode,
      horizonNs: effectiveHorizonNs(horizonNs, rateBps),
      perPort,
      line,
    };
    if (ecnNs !== undefined) rule.ecnNs = ecnNs;
    if (events.pps !== undefined) rule.pps = events.pps;
    if (events.connections !== undefined) rule.connections = events.connections;
    if (client) rule.client = client;
    if (scope) rule.interfaces = scope;
    checked.rule = rule;
    return [checked];
  });
}

/**
 * Token buckets and shaped buckets (HTB classes) a rule takes: what capacity
 * is counted in, here and for one-rule API writes (incremental.ts). An
 * unknown rate (invalid) counts as limited.
 */
export function bucketCount(rule: Pick<PolicyRule, 'from' | 'to' | 'perPort' | 'direction' | 'mode'> & { rateBps: number | undefined }): { buckets: number; shaped: number } {
  const ports = rule.perPort ? rule.to - rule.from + 1 : 1;
  const directions = rule.direction === 'both' ? 2 : 1;
  return { buckets: directions * ports, shaped: rule.mode === 'shape' && rule.rateBps !== 0 && rule.direction !== 'ingress' ? ports : 0 };
}

function defaultOf<T extends string>(key: keyof typeof RULE_KEYS): T {
  return RULE_KEYS[key]?.default as T;
}

function checkPorts(
  rule: RawRule,
  path: string,
  findings: Findings,
): { from: number; to: number; range: boolean } | undefined {
  const portPath = childPath(path, 'port');
  if (rule.port === undefined) return undefined;
  const text = String(rule.port);
  const [from, to = from] = text.split('-').map(Number) as [number, number?];
  const range = text.includes('-');
  for (const end of range ? [from, to] : [from]) {
    if (end < 1 || end > 65535) {
      findings.error(portPath, findings.valueAt(portPath), `${portPath}: ${end} in "${text}" is out of range 1..65535`, 'range');
      return undefined;
    }
  }
  if (from > to) {
    findings.error(portPath, findings.valueAt(portPath), `${portPath}: the range "${text}" is reversed; write "${to}-${from}"`, 'range');
    return undefined;
  }
  if (!range && rule.buckets !== undefined) {
    const bucketsPath = childPath(path, 'buckets');
    findings.error(
      bucketsPath,
      findings.keyAt(bucketsPath),
      `${bucketsPath}: only a port range has per-port buckets; remove "buckets" or make port a range such as "${from}-${from + 9}"`,
      'conflict',
    );
  }
  return { from, to, range };
}

function checkScope(
  scope: string[] | undefined,
  known: string[],
  path: string,
  findings: Findings,
): string[] | undefined {
  if (scope === undefined) return undefined;
  scope.forEach((name, i) => {
    if (name === undefined || known.includes(name)) return;
    const itemPath = childPath(childPath(path, 'interfaces'), i);
    findings.error(
      itemPath,
      findings.valueAt(itemPath),
      `${itemPath}: "${name}" is not one of the top-level interfaces (${known.join(', ') || 'none'})` +
        `${suggestion(name, known) || `; add it to interfaces: or remove it here`}`,
      'reference',
    );
  });
  return [...new Set(scope)];
}

function checkRate(rule: RawRule, defaults: RawRule, path: string, findings: Findings): number | undefined {
  // A rate that is present but invalid has been reported already, and must not fall back to the default.
  if (!findings.isClean(childPath(path, 'rate'))) return undefined;
  const text = rule.rate ?? defaults.rate;
  if (text !== undefined) return parseRate(text);
  if (findings.isClean('defaults.rate')) {
    findings.error(
      path,
      findings.valueAt(path),
      `${path}: missing required key "rate"; set it on the rule or in defaults, e.g. rate: 10mbit (or "unlimited" to count only)`,
      'missing-key',
    );
  }
  return undefined;
}

/** Depth of policed and of shaped buckets: one burst when the policy sets it, else each mode's default. */
function checkBurst(
  rule: RawRule,
  defaults: RawRule,
  rateBps: number,
  path: string,
  findings: Findings,
): { burstNs: number; shapeBurstNs: number } | undefined {
  const burstPath = childPath(path, 'burst');
  if (!findings.isClean(burstPath)) return undefined;
  if (rateBps === 0) {
    if (rule.burst !== undefined) {
      findings.warning(burstPath, findings.keyAt(burstPath), `${burstPath}: a burst has no effect with rate: unlimited; remove it`);
    }
    return { burstNs: 0, shapeBurstNs: 0 };
  }
  try {
    if (rule.burst !== undefined) {
      const burstNs = parseBurst(rule.burst, rateBps);
      return { burstNs, shapeBurstNs: burstNs };
    }
    // Like the built-in default, a burst from defaults is meant for every rate, so it rises to the minimum.
    if (defaults.burst !== undefined) {
      const burstNs = parseBurst(defaults.burst, rateBps, { raiseToMinimum: true });
      return { burstNs, shapeBurstNs: burstNs };
    }
    return {
      burstNs: parseBurst(DEFAULT_BURST, rateBps, { raiseToMinimum: true }),
      shapeBurstNs: parseBurst(DEFAULT_SHAPE_BURST, rateBps, { raiseToMinimum: true }),
    };
  } catch (err) {
    if (!(err instanceof UnitError)) throw err;
    if (rule.burst !== undefined) {
      findings.error(burstPath, findings.valueAt(burstPath), `${burstPath}: ${err.message}`, 'units');
    } else {
      const line = findings.valueAt(path).line;
      findings.error(
        'defaults.burst',
        findings.valueAt('defaults.burst'),
        `defaults.burst: for the rule at line ${line} (rate ${formatRate(rateBps)}): ${err.message}; or set burst on that rule`,
        'units',
      );
    }
    return undefined;
  }
}

/** pps and connections of a rule (or of defaults), per second. */
function checkEvents(rule: RawRule, defaults: RawRule, path: string, findings: Findings): { pps?: number; connections?: number } {
  const out: { pps?: number; connections?: number } = {};
  for (const key of ['pps', 'connections'] as const) {
    const own = rule[key] !== undefined;
    const text = own ? rule[key] : defaults[key];
    if (text === undefined || !findings.isClean(own ? childPath(path, key) : `defaults.${key}`)) continue;
    out[key] = key === 'pps' ? parsePacketRate(text) : parseConnectionRate(text);
  }
  return out;
}

/** A rule's client: section (or the one in defaults), units converted; undefined when absent or invalid. */
function checkClient(rule: RawRule, defaults: RawRule, path: string, findings: Findings): ClientLimit | undefined {
  const own = rule.client !== undefined;
  const raw = own ? rule.client : defaults.client;
  const where = own ? childPath(path, 'client') : 'defaults.client';
  if (raw === undefined || !findings.isClean(where)) return undefined;
  if (raw.rate === undefined && raw.pps === undefined && raw.connections === undefined) {
    findings.error(where, findings.valueAt(where), `${where}: give each client a rate, pps or connections limit, e.g. rate: 10mbit`, 'missing-key');
    return undefined;
  }
  const rateBps = raw.rate === undefined ? 0 : parseRate(raw.rate);
  let burstNs: number;
  try {
    // Event-only limits take their depth in time: a size needs a bit rate.
    burstNs = parseBurst(raw.burst ?? DEFAULT_BURST, rateBps || 8e9, { raiseToMinimum: raw.burst === undefined });
  } catch (err) {
    if (!(err instanceof UnitError)) throw err;
    const burstPath = childPath(where, 'burst');
    findings.error(burstPath, findings.valueAt(burstPath), `${burstPath}: ${err.message}`, 'units');
    return undefined;
  }
  return {
    rateBps,
    burstNs,
    ...(raw.pps !== undefined ? { pps: parsePacketRate(raw.pps) } : {}),
    ...(raw.connections !== undefined ? { connections: parseConnectionRate(raw.connections) } : {}),
    ipv6Prefix: raw.ipv6Prefix ?? 64,
  };
}

/** Connection limits count TCP SYNs arriving: refuse them where none can be seen. */
function checkConnectionScope(
  rule: RawRule,
  defaults: RawRule,
  client: ClientLimit | undefined,
  protocol: RuleProtocol,
  direction: RuleDirection,
  path: string,
  findings: Findings,
): void {
  const wanted = [
    rule.connections !== undefined ? childPath(path, 'connections') : undefined,
    rule.connections === undefined && defaults.connections !== undefined ? 'defaults.connections' : undefined,
    client?.connections !== undefined ? childPath(childPath(path, 'client'), 'connections') : undefined,
  ].filter((p): p is string => p !== undefined);
  for (const where of wanted) {
    if (protocol === 'udp') {
      findings.error(where, findings.valueAt(where), `${where}: a connection limit counts TCP SYNs, and this rule is protocol: udp; use pps for UDP`, 'conflict');
    } else if (direction === 'egress') {
      findings.error(where, findings.valueAt(where), `${where}: new connections are limited where their SYN arrives (ingress); set direction: ingress or both`, 'conflict');
    }
  }
}

/** ecn as ns: 0 for off, undefined for each mode's default (true, or not set). */
function checkEcn(rule: RawRule, defaults: RawRule, path: string, findings: Findings): number | undefined {
  const own = rule.ecn !== undefined;
  const value = own ? rule.ecn : defaults.ecn;
  const where = own ? childPath(path, 'ecn') : 'defaults.ecn';
  if (value === undefined || value === true || !findings.isClean(where)) return undefined;
  if (value === false || value.trim().toLowerCase() === 'off') return 0;
  const ns = parseDuration(value);
  if (ns > MAX_HORIZON_NS) {
    findings.error(where, findings.valueAt(where), `${where}: "${value}" is longer than ${formatDuration(MAX_HORIZON_NS)}; write a delay such as "2ms", or "off"`, 'range');
    return undefined;
  }
  return ns;
}

/** horizon as ns, as written (the caller raises it to two packets at the rate). */
function checkHorizon(rule: RawRule, defaults: RawRule, path: string, findings: Findings): number | undefined {
  const own = rule.horizon !== undefined;
  const text = (own ? rule.horizon : defaults.horizon) ?? DEFAULT_HORIZON;
  const where = own ? childPath(path, 'horizon') : 'defaults.horizon';
  if (!findings.isClean(where)) return undefined;
  const ns = text.trim().toLowerCase() === 'off' ? -1 : parseDuration(text);
  if (ns < 1_000_000 || ns > MAX_HORIZON_NS) {
    findings.error(
      where,
      findings.valueAt(where),
      `${where}: "${text}" is not a delay from 1ms to ${formatDuration(MAX_HORIZON_NS)}; a shaper needs a bound on its ` +
        `queue: write a delay such as "${DEFAULT_HORIZON}"`,
      'range',
    );
    return undefined;
  }
  return ns;
}

function checkName(
  rule: RawRule,
  protocol: RuleProtocol,
  ports: { from: number; to: number; range: boolean },
  path: string,
  line: number,
  names: Map<string, { line: number; derived: boolean }>,
  findings: Findings,
): string | undefined {
  const namePath = childPath(path, 'name');
  const derived = rule.name === undefined;
  // No name can be derived from an invalid protocol, and an invalid name has been reported.
  if (derived && !(findings.isClean(namePath) && findings.isClean(childPath(path, 'protocol')))) return undefined;
  const name = rule.name ?? (ports.range ? `${protocol}-${ports.from}-${ports.to}` : `${protocol}-${ports.from}`);
  const first = names.get(name);
  if (first === undefined) {
    names.set(name, { line, derived });
    return name;
  }
  const firstIs = first.derived ? `the name derived for the rule at line ${first.line}` : `used by the rule at line ${first.line}`;
  if (derived) {
    const portPath = childPath(path, 'port');
    findings.error(
      portPath,
      findings.valueAt(portPath),
      `${path}: the derived name "${name}" is already ${firstIs}; give one of them a name`,
      'duplicate',
    );
  } else {
    findings.error(namePath, findings.valueAt(namePath), `${namePath}: "${name}" is already ${firstIs}; rule names must be unique`, 'duplicate');
  }
  return name;
}

/** Overlaps, profiles and bucket capacity: what only the whole rule set reveals. */
function checkAcrossRules(checked: CheckedRule[], interfaces: PolicyInterface[], findings: Findings): void {
  const names = interfaces.map((i) => i.name);
  const { profileOf, ruleSets } = assignProfiles(
    names,
    checked.map((r) => r.scope),
  );

  const extra = profileOf.indexOf(PS.PS_MAX_PROFILES);
  if (extra >= 0) {
    const namePath = childPath(childPath('interfaces', extra), 'name');
    findings.error(
      namePath,
      findings.valueAt(namePath),
      `${namePath}: the rules give the interfaces ${ruleSets.length} different rule sets, but the data plane ` +
        `holds ${PS.PS_MAX_PROFILES} (PS_MAX_PROFILES) and "${names[extra]}" would need another; interfaces share ` +
        `a set only when exactly the same rules apply to them, so restrict fewer rules with "interfaces:"`,
      'capacity',
    );
  }

  for (const overlap of findOverlaps(
    checked.map((r) => r.claim),
    ruleSets,
  )) {
    const later = checked[overlap.rule];
    const first = checked[overlap.first];
    if (later === undefined || first === undefined) continue;
    const portPath = childPath(childPath('rules', later.index), 'port');
    const where = names[profileOf.indexOf(overlap.profile)];
    findings.error(
      portPath,
      findings.valueAt(portPath),
      `${portPath}: overlaps rule "${first.name}" (line ${first.line}): both match ${overlap.protocol} port ` +
        `${overlap.port} ${overlap.direction} (${overlap.side} side) on ${where}; a port belongs to at most one ` +
        `rule per protocol, direction and side, so change the ports, protocol, direction, side or interfaces of one of them`,
      'overlap',
    );
  }

  let shaped = 0;
  for (const { index, shaped: more } of checked) {
    shaped += more;
    if (shaped <= MAX_SHAPED_BUCKETS) continue;
    const path = childPath('rules', index);
    findings.error(
      path,
      findings.valueAt(path),
      `${path}: this rule brings the number of shaped buckets to ${shaped}, more than the ${MAX_SHAPED_BUCKETS} HTB ` +
        `classes a device can hold (16-bit class ids); use buckets: shared for large ranges, or mode: police for some rules`,
      'capacity',
    );
    break;
  }

  const capacity = PS.PS_MAX_SLOTS - 1; // slot 0 means "no rule"
  let total = 0;
  for (const { index, buckets } of checked) {
    total += buckets;
    if (total <= capacity) continue;
    const path = childPath('rules', index);
    findings.error(
      path,
      findings.valueAt(path),
      `${path}: this rule brings the number of token buckets to ${total}, more than the data plane's ${capacity} ` +
        `(PS_MAX_SLOTS - 1); use buckets: shared for large ranges, or fewer rules`,
      'capacity',
    );
    return;
  }
}

function sortByPosition(diagnostics: Diagnostic[]): Diagnostic[] {
  return [...diagnostics].sort((a, b) => a.line - b.line || a.column - b.column);
}
