/**
 * The facade the REST API calls: reads (rules with counters and observed
 * rates, global counters, readiness, the policy) and writes (a rule, the
 * whole policy), as API views. Route tests use a fake of ShaperService; the
 * agent runs AgentService, the only API code that touches the Agent or the
 * kernel. Writes go through the controller's PolicyWriter (group commit,
 * rollback); counters and observed rates come from its RuleCounters reader.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { Logger } from 'pino';
import type { DirectionTotals, MetricsState } from './metrics.js';
import type {
  ApplyView,
  ClientsQuery,
  ClientsView,
  GlobalRow,
  PolicyView,
  ReadyView,
  RuleBody,
  RulePatch,
  RuleView,
  StatsView,
} from './schemas.js';
import { formatDiagnostic, RuleNotFoundError } from '../errors.js';
import { hashText, type Agent } from '../controller/agent.js';
import { clientsSummary } from '../controller/clients.js';
import { UnmatchedSampler } from './ports.js';
import { readUnmatched } from '../kernel/unmatched.js';
import type { UnmatchedTraffic } from './ports-schemas.js';
import { RuleCounters, type RuleReading } from '../controller/rule-counters.js';
import { PolicyWriter } from '../controller/writes.js';
import { readCounters, readGlobal } from '../kernel/counters.js';
import type { Direction } from '../kernel/desired.js';
import { formatRate, type ApiSettings, type PolicyRule } from '../policy/index.js';

/** What the REST API needs from the agent. */
export interface ShaperService {
  /** API settings of the policy the agent started with. */
  readonly settings: ApiSettings;
  /** Every rule, or the first `limit` rules of the policy. */
  listRules(limit?: number): RuleView[];
  /** Throws RuleNotFoundError. */
  getRule(name: string): RuleView;
  /** Rules whose port or range includes port. */
  rulesForPort(port: number): RuleView[];
  /** Create or replace a rule; in force in the kernel and persisted when it resolves. */
  putRule(name: string, body: RuleBody, requestId: string): Promise<{ created: boolean; rule: RuleView }>;
  patchRule(name: string, patch: RulePatch, requestId: string): Promise<RuleView>;
  deleteRule(name: string, requestId: string): Promise<void>;
  stats(): StatsView;
  /** Traffic no rule matched, per port, and whether any interface counts it (interfaces[].countUnmatched). */
  unmatchedTraffic(): { counting: boolean; windowSeconds: number; traffic: UnmatchedTraffic[] };
  ready(): ReadyView;
  /** The policy file: its text and whether it is the policy in force. */
  policy(): PolicyView & { text: string };
  /** Replace the whole policy with YAML text (validated exactly as the file is). */
  replacePolicy(text: string, requestId: string): Promise<ApplyView>;
  /** The clients of a rule with per-client limits. Throws RuleNotFoundError. */
  clients(name: string, query: Required<ClientsQuery>): ClientsView;
  /** The policy in force, its reloads, the per-rule series cap and totals over every rule, for /metrics. */
  metricsState(): MetricsState;
}

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

/** ShaperService over the running Agent. */
export class AgentService implements ShaperService {
  readonly settings: ApiSettings;
  private readonly writer: PolicyWriter;
  private readonly unmatched: UnmatchedSampler;

  /** counters: the agent's one reader, shared with its stats log (one sampler); by default a reader of its own. */
  constructor(
    private readonly agent: Agent,
    private readonly log: Logger,
    private readonly counters = new RuleCounters(agent, log),
  ) {
    this.settings = agent.state.policy.api;
    this.writer = new PolicyWriter(agent, log);
    this.unmatched = new UnmatchedSampler(() => readUnmatched(agent.dataPlane), () => agent.state.policy.interfaces.some((i) => i.countUnmatched));
    this.counters.sampler.onSample(() => this.unmatched.sample());
  }

  /**
   * Sample counters every intervalMs for the observed rates (and the traffic
   * no rule matched). The API, the metrics listener and the stats log share
   * the sampler: it stops when the last of them stops it.
   */
  startSampling(intervalMs = 1000): void {
    this.counters.start(intervalMs);
  }

  stopSampling(): void {
    this.counters.stop();
  }

  listRules(limit = Number.POSITIVE_INFINITY): RuleView[] {
    const { policy } = this.agent.state;
    const rules = limit < policy.rules.length ? policy.rules.slice(0, limit) : policy.rules;
    const readings = this.counters.read(rules.map((r) => r.name));
    return rules.map((r) => this.view(r, readings.get(r.name)));
  }

  metricsState(): MetricsState {
    const { hash, policy } = this.agent.state;
    return {
      source: this.agent.policyPath,
      hash,
      reloads: { ...this.agent.reloads },
      lastReloadSuccessful: this.agent.lastReloadSuccessful,
      maxRules: policy.metrics.maxRules,
      ruleCount: policy.rules.length,
      totals: this.totals(),
    };
  }

  /** Counters of every bucket added up by direction: one batch read per scrape (a few ms at 65,536 rules). */
  private totals(): DirectionTotals[] {
    return this.counters.totals();
  }

  getRule(name: string): RuleView {
    const rule = this.agent.state.policy.rules.find((r) => r.name === name);
    if (!rule) throw new RuleNotFoundError(name);
    return this.view(rule, this.counters.readRule(name));
  }

  rulesForPort(port: number): RuleView[] {
    const rules = this.agent.state.policy.rules.filter((r) => r.from <= port && port <= r.to);
    const readings = this.counters.read(rules.map((r) => r.name));
    return rules.map((r) => this.view(r, readings.get(r.name)));
  }

  async putRule(name: string, body: RuleBody, requestId: string): Promise<{ created: boolean; rule: RuleView }> {
    const { created } = await this.writer.putRule(name, body, requestId);
    return { created, rule: this.getRule(name) };
  }

  async patchRule(name: string, patch: RulePatch, requestId: string): Promise<RuleView> {
    await this.writer.patchRule(name, patch, requestId);
    return this.getRule(name);
  }

  async deleteRule(name: string, requestId: string): Promise<void> {
    await this.writer.deleteRule(name, requestId);
  }

  async replacePolicy(text: string, requestId: string): Promise<ApplyView> {
    const { rules, ms, warnings } = await this.writer.replacePolicy(text, requestId);
    return { applied: true, rules, ms, warnings: warnings.map(formatDiagnostic) };
  }

  policy(): PolicyView & { text: string } {
    const text = readFileSync(this.agent.policyPath, 'utf8');
    const sha256 = hashText(text);
    return { file: this.agent.policyPath, sha256, inForce: sha256 === this.agent.state.hash, policy: parseDocument(text).toJS() as unknown, text };
  }

  clients(name: string, query: Required<ClientsQuery>): ClientsView {
    const { policy, slots } = this.agent.state;
    if (!policy.rules.some((r) => r.name === name)) throw new RuleNotFoundError(name);
    const buckets = (this.agent.state.bucketsByRule.get(name) ?? []).flatMap((bucket) => {
      const slot = slots.get(bucket.key);
      return slot === undefined ? [] : [{ bucket, slot }];
    });
    const counters = readCounters(this.agent.dataPlane, buckets.map((b) => b.slot));
    return clientsSummary(this.agent.dataPlane, name, buckets, counters, { ...query, nowNs: process.hrtime.bigint() });
  }

  stats(): StatsView {
    const dp = this.agent.dataPlane;
    const names = new Map(this.agent.interfaces().map((i) => [i.ifindex, i.name]));
    const rows: { name: string; ifindex: number; row: number }[] = [{ name: 'unregistered', ifindex: 0, row: 0 }];
    for (const [ifindex, iface] of dp.interfaces()) rows.push({ name: names.get(ifindex) ?? `ifindex ${ifindex}`, ifindex, row: iface.stats_row });
    const interfaces: GlobalRow[] = rows.flatMap(({ name, ifindex, row }) =>
      DIRECTIONS.map((direction) => {
        const g = readGlobal(dp, row, direction);
        const kind = (k: keyof typeof g) => ({ packets: Number(g[k].pkts), bytes: Number(g[k].bytes) });
        return { interface: name, ifindex, direction, nonIp: kind('nonIp'), unparsed: kind('unparsed'), fragment: kind('fragment'), unmatched: kind('unmatched') };
      }),
    );
    return { interfaces };
  }

  unmatchedTraffic(): { counting: boolean; windowSeconds: number; traffic: UnmatchedTraffic[] } {
    return { counting: this.unmatched.counting(), windowSeconds: this.unmatched.windowSeconds(), traffic: this.unmatched.traffic() };
  }

  ready(): ReadyView {
    let registered: Set<number>;
    const dp = this.agent.dataPlane;
    try {
      dp.meta();
      registered = new Set(dp.interfaces().keys());
    } catch (err) {
      this.log.error({ err: String(err) }, 'readiness: pinned maps not readable');
      return { ready: false, reason: 'pinned maps not readable', interfaces: [] };
    }
    const interfaces = this.agent.interfaces().map((i) => {
      const attached = i.ifindex > 0 ? dp.attached(i.ifindex, i.name) : { ingress: 0, egress: 0 };
      return {
        name: i.name,
        ifindex: i.ifindex,
        ingress: !i.ingress || attached.ingress > 0,
        egress: !i.egress || attached.egress > 0,
        registered: registered.has(i.ifindex),
        ...(i.error ? { error: i.error } : {}),
      };
    });
    const missing = interfaces.filter((i) => !(i.ingress && i.egress && i.registered)).map((i) => i.name);
    if (missing.length) return { ready: false, reason: `not attached on ${missing.join(', ')}`, interfaces };
    return { ready: true, interfaces };
  }

  /** The API view of a rule and its reading (counters and observed rates per direction). */
  private view(rule: PolicyRule, reading: RuleReading | undefined): RuleView {
    const counters: RuleView['counters'] = {};
    const observed: RuleView['observed'] = {};
    for (const direction of DIRECTIONS) {
      const r = reading?.[direction];
      if (!r) continue;
      counters[direction] = r.counters;
      observed[direction] = r.observed;
    }
    return {
      name: rule.name,
      port: rule.from === rule.to ? rule.from : `${rule.from}-${rule.to}`,
      from: rule.from,
      to: rule.to,
      protocol: rule.protocol,
      direction: rule.direction,
      side: rule.side,
      rate: formatRate(rule.rateBps),
      rateBitsPerSecond: rule.rateBps,
      burstBytes: Math.round((rule.burstNs * rule.rateBps) / 8e9),
      burstNanoseconds: rule.burstNs,
      mode: rule.mode,
      buckets: rule.perPort ? 'per-port' : 'shared',
      ...(rule.interfaces ? { interfaces: rule.interfaces } : {}),
      counters,
      observed,
    };
  }
}
