/**
 * The facade the REST API calls: reads (rules with counters and observed
 * rates, global counters, readiness, the policy) and writes (a rule, the
 * whole policy). Route tests use a fake of ShaperService; the agent runs
 * AgentService, the only API code that touches the Agent or the kernel.
 *
 * A write, all-or-nothing, through agent.serialize() (concurrent ones in one batch):
 * edit the file's text (yaml Document API) → validate it exactly as the file
 * is validated → apply it to the kernel (in force before the response) →
 * write the file atomically → respond. If the file cannot be written the
 * previous policy is applied again. The watcher's reload then finds the
 * file's hash already in force and does nothing.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { Logger } from 'pino';
import type { DirectionTotals, MetricsState } from '../api/metrics.js';
import type { ApplyView, DirectionCounters, GlobalRow, ObservedRate, PolicyView, ReadyView, RuleBody, RulePatch, RuleView, StatsView } from '../api/schemas.js';
import {
  formatDiagnostic,
  PersistError,
  PolicyChangeError,
  PolicyError,
  PolicyFileInvalidError,
  PolicyReadOnlyError,
  PortshaperError,
  RuleNotFoundError,
  type Diagnostic,
  type FieldProblem,
} from '../errors.js';
import { addCounters, readCounters, readGlobal, readSlotCounters } from '../kernel/counters.js';
import type { Direction } from '../kernel/desired.js';
import { zeroCounters, type PsCounters } from '../kernel/layout.js';
import { formatRate, type ApiSettings, type PolicyRule, type ValidPolicy } from '../policy/index.js';
import { hashText, type Agent, type ApplyResult } from './agent.js';
import { deleteRuleText, patchRuleText, putRuleText, writeFileAtomic } from './persist.js';
import { isKubeletManaged, readOnlyReason } from './source.js';

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
  ready(): ReadyView;
  /** The policy file: its text and whether it is the policy in force. */
  policy(): PolicyView & { text: string };
  /** Replace the whole policy with YAML text (validated exactly as the file is). */
  replacePolicy(text: string, requestId: string): Promise<ApplyView>;
  /** The policy in force, its reloads, the per-rule series cap and totals over every rule, for /metrics. */
  metricsState(): MetricsState;
}

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
/** Samples kept for observed rates: one a second, so rates cover the last 5 s. */
const RING = 6;
const FIELDS = 4; // pass bytes, pass packets, drop bytes, drop packets
/** Up to this many buckets, a rule's counters are read one slot at a time. */
const FEW_SLOTS = 64;

/** One counter sample: the time and, per slot, FIELDS numbers. */
interface Sample {
  ms: number;
  values: Float64Array;
}

/** A write's change to the policy text; `index` is the rule it edits, for field names in errors. */
type Edit = (base: { text: string; policy: ValidPolicy }) => { text: string; index?: number };

/** A write waiting for its batch. */
interface PendingWrite {
  reason: string;
  requestId: string;
  edit: Edit;
  resolve(view: ApplyView): void;
  reject(err: unknown): void;
}


/** Per-rule index of the current plan: the buckets (key, direction) of each rule. */

/** ShaperService over the running Agent. */
export class AgentService implements ShaperService {
  readonly settings: ApiSettings;
  private samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private pending: PendingWrite[] = [];

  constructor(
    private readonly agent: Agent,
    private readonly log: Logger,
  ) {
    this.settings = agent.state.policy.api;
  }

  /** Sample counters every intervalMs for the observed rates. */
  startSampling(intervalMs = 1000): void {
    // The API and the metrics listener share one service: one sampler.
    if (this.timer) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  stopSampling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  listRules(limit = Number.POSITIVE_INFINITY): RuleView[] {
    const { policy, slots, bucketsByRule } = this.agent.state;
    const rules = limit < policy.rules.length ? policy.rules.slice(0, limit) : policy.rules;
    const wanted = rules === policy.rules ? slots.values() : rules.flatMap((r) => (bucketsByRule.get(r.name) ?? []).flatMap((b) => slots.get(b.key) ?? []));
    const counters = readCounters(this.agent.dataPlane, wanted);
    return rules.map((r) => this.view(r, (slot) => counters.get(slot)));
  }

  getRule(name: string): RuleView {
    const rule = this.agent.state.policy.rules.find((r) => r.name === name);
    if (!rule) throw new RuleNotFoundError(name);
    return this.viewReading(rule);
  }

  rulesForPort(port: number): RuleView[] {
    return this.agent.state.policy.rules.filter((r) => r.from <= port && port <= r.to).map((r) => this.viewReading(r));
  }

  async putRule(name: string, body: RuleBody, requestId: string): Promise<{ created: boolean; rule: RuleView }> {
    let created = false;
    await this.write(`PUT rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      created = index === undefined;
      return { text: putRuleText(text, index, name, body), index: index ?? policy.rules.length };
    });
    return { created, rule: this.getRule(name) };
  }

  async patchRule(name: string, patch: RulePatch, requestId: string): Promise<RuleView> {
    await this.write(`PATCH rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      return { text: patchRuleText(text, index, name, patch), index };
    });
    return this.getRule(name);
  }

  async deleteRule(name: string, requestId: string): Promise<void> {
    await this.write(`DELETE rule ${name}`, requestId, ({ text, policy }) => {
      const index = indexOf(policy, name);
      if (index === undefined) throw new RuleNotFoundError(name);
      return { text: deleteRuleText(text, index) };
    });
  }

  async replacePolicy(text: string, requestId: string): Promise<ApplyView> {
    return this.write('PUT policy', requestId, () => ({ text }));
  }

  policy(): PolicyView & { text: string } {
    const text = readFileSync(this.agent.policyPath, 'utf8');
    const sha256 = hashText(text);
    return { file: this.agent.policyPath, sha256, inForce: sha256 === this.agent.state.hash, policy: parseDocument(text).toJS() as unknown, text };
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

  /**
   * Counters of every bucket added up by direction, from the last counter
   * sample (taken every second for the observed rates; read now when sampling
   * is off). Reading and decoding 65,536 slots per scrape took 250-800 ms here;
   * summing the sample takes about a millisecond.
   */
  private totals(): DirectionTotals[] {
    if (!this.timer || !this.samples.length) this.sample();
    const values = this.samples[this.samples.length - 1]?.values;
    const { desired, slots } = this.agent.state;
    const sums = new Map<Direction, number[]>();
    for (const b of desired.buckets) {
      const slot = slots.get(b.key);
      if (slot === undefined || !values) continue;
      let sum = sums.get(b.direction);
      if (!sum) sums.set(b.direction, (sum = [0, 0, 0, 0]));
      for (let f = 0; f < FIELDS; f++) sum[f]! += values[slot * FIELDS + f] ?? 0;
    }
    return DIRECTIONS.flatMap((direction) => {
      const sum = sums.get(direction);
      if (!sum) return [];
      const [passedBytes = 0, passedPackets = 0, droppedBytes = 0, droppedPackets = 0] = sum;
      return [{ direction, passedPackets, passedBytes, droppedPackets, droppedBytes }];
    });
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
        return { interface: name, ifindex, direction, nonIp: kind('nonIp'), unparsed: kind('unparsed'), fragment: kind('fragment'), unmatched: kind('unmatched'), matched: kind('matched') };
      }),
    );
    return { interfaces };
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

  /**
   * Queue one write. Writes that arrive while another is being applied are
   * applied together (group commit): each edit is validated on top of the
   * previous ones and refused alone if it fails; the accepted ones go to the
   * kernel in one apply and to the file in one write, and are answered
   * together. A burst of concurrent writes thus costs a few applies, not one each.
   */
  private write(reason: string, requestId: string, edit: Edit): Promise<ApplyView> {
    // A file the agent cannot write back is refused before anything is applied (a ConfigMap mount).
    const path = this.agent.policyPath;
    const readOnly = readOnlyReason(path);
    if (readOnly) return Promise.reject(new PolicyReadOnlyError(path, readOnly, isKubeletManaged(path)));
    return new Promise<ApplyView>((resolve, reject) => {
      this.pending.push({ reason, requestId, edit, resolve, reject });
      // The first write of a batch schedules its flush; later ones join until it starts. setImmediate
      // runs after the event loop has read every request that has arrived, so they all join.
      if (this.pending.length === 1) setImmediate(() => void this.agent.serialize(async () => this.flush()));
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    const path = this.agent.policyPath;
    let base: { text: string; policy: ValidPolicy };
    try {
      base = this.base();
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    let { text, policy } = base;
    let warnings: Diagnostic[] = [];
    const accepted: PendingWrite[] = [];
    for (const w of batch) {
      try {
        const next = w.edit({ text, policy });
        try {
          ({ policy, warnings } = this.agent.validateText(next.text));
        } catch (err) {
          throw err instanceof PolicyError ? changeError(err.diagnostics, next.index) : err;
        }
        text = next.text;
        accepted.push(w);
      } catch (err) {
        w.reject(err);
      }
    }
    if (!accepted.length) return;
    const requests = accepted.map((w) => w.requestId);
    const why = `API ${accepted.map((w) => w.reason).join(', ')}`;
    const previous = this.agent.state;
    let result: ApplyResult;
    try {
      result = this.agent.applyPolicy(policy, hashText(text), why);
      writeFileAtomic(path, text);
    } catch (err) {
      this.log.error({ requests, file: path, err: String(err) }, 'API change failed; rolling the kernel back to the previous policy');
      let failure = err;
      try {
        this.agent.applyPolicy(previous.policy, previous.hash, `rollback of requests ${requests.join(', ')}`);
        if (!(err instanceof PortshaperError)) failure = new PersistError(path, err);
      } catch (rollback) {
        this.log.error({ requests, err: String(rollback) }, 'rollback failed; the kernel may hold part of the change until the next reload');
      }
      for (const w of accepted) w.reject(failure);
      return;
    }
    if (JSON.stringify(policy.api) !== JSON.stringify(this.settings)) {
      this.log.warn({ running: this.settings, file: policy.api }, 'api settings change at the next agent start');
    }
    const view = { applied: true, rules: policy.rules.length, ms: result.ms, warnings: warnings.map(formatDiagnostic) };
    for (const w of accepted) w.resolve(view);
  }

  /** The file to edit: the one in force, or an edited file that validates (its edits then go in with the change). */
  private base(): { text: string; policy: ValidPolicy } {
    const path = this.agent.policyPath;
    const text = readFileSync(path, 'utf8');
    const state = this.agent.state;
    if (hashText(text) === state.hash) return { text, policy: state.policy };
    try {
      return { text, policy: this.agent.validateText(text).policy };
    } catch (err) {
      if (err instanceof PolicyError) throw new PolicyFileInvalidError(path, err.diagnostics);
      throw err;
    }
  }

  /** View of one rule, reading only its own slots. */
  private viewReading(rule: PolicyRule): RuleView {
    const slots = this.agent.state.slots;
    const mine = (this.agent.state.bucketsByRule.get(rule.name) ?? []).map((b) => slots.get(b.key)).filter((s): s is number => s !== undefined);
    // readCounters reads every slot up to the highest wanted one: for a few slots, single lookups are cheaper.
    const dp = this.agent.dataPlane;
    const counters = mine.length <= FEW_SLOTS ? new Map(mine.map((slot) => [slot, readSlotCounters(dp, slot)])) : readCounters(dp, mine);
    return this.view(rule, (slot) => counters.get(slot));
  }

  private view(rule: PolicyRule, countersOf: (slot: number) => PsCounters | undefined): RuleView {
    const { slots } = this.agent.state;
    const buckets = this.agent.state.bucketsByRule.get(rule.name) ?? [];
    const counters: RuleView['counters'] = {};
    const observed: RuleView['observed'] = {};
    for (const direction of DIRECTIONS) {
      const mine = buckets.filter((b) => b.direction === direction).map((b) => slots.get(b.key)).filter((s): s is number => s !== undefined);
      if (!mine.length) continue;
      const sum = zeroCounters();
      for (const slot of mine) {
        const c = countersOf(slot);
        if (c) addCounters(sum, c);
      }
      counters[direction] = toCounters(sum);
      observed[direction] = this.observed(mine);
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

  /** Rates over the sample window for the given slots; a slot whose counters went down (re-used) counts 0. */
  private observed(slots: number[]): ObservedRate {
    const last = this.samples[this.samples.length - 1];
    const first = this.samples[0];
    const seconds = last && first ? (last.ms - first.ms) / 1000 : 0;
    const rate = [0, 0, 0, 0];
    if (last && first && seconds > 0) {
      for (const slot of slots) {
        for (let f = 0; f < FIELDS; f++) {
          const delta = (last.values[slot * FIELDS + f] ?? 0) - (first.values[slot * FIELDS + f] ?? 0);
          if (delta > 0) rate[f]! += delta / seconds;
        }
      }
    }
    const [passBytes = 0, passPkts = 0, dropBytes = 0, dropPkts = 0] = rate;
    return {
      bitsPerSecond: Math.round(passBytes * 8),
      packetsPerSecond: Math.round(passPkts),
      droppedBitsPerSecond: Math.round(dropBytes * 8),
      droppedPacketsPerSecond: Math.round(dropPkts),
      windowSeconds: Math.round(seconds * 1000) / 1000,
    };
  }

  private sample(): void {
    try {
      const counters = readCounters(this.agent.dataPlane, this.agent.state.slots.values());
      let size = 0;
      for (const slot of counters.keys()) if (slot >= size) size = slot + 1;
      const values = new Float64Array(size * FIELDS);
      for (const [slot, c] of counters) {
        values[slot * FIELDS] = Number(c.pass_bytes);
        values[slot * FIELDS + 1] = Number(c.pass_pkts);
        values[slot * FIELDS + 2] = Number(c.drop_bytes);
        values[slot * FIELDS + 3] = Number(c.drop_pkts);
      }
      this.samples.push({ ms: performance.now(), values });
      if (this.samples.length > RING) this.samples.shift();
    } catch (err) {
      // The data plane is closed while the agent stops; the next start samples again.
      this.log.debug({ err: String(err) }, 'counter sample skipped');
    }
  }
}

function indexOf(policy: ValidPolicy, name: string): number | undefined {
  const i = policy.rules.findIndex((r) => r.name === name);
  return i < 0 ? undefined : i;
}

function toCounters(c: PsCounters): DirectionCounters {
  return {
    passedPackets: Number(c.pass_pkts),
    passedBytes: Number(c.pass_bytes),
    droppedPackets: Number(c.drop_pkts),
    droppedBytes: Number(c.drop_bytes),
    overLimitPackets: Number(c.over_pkts),
    overLimitBytes: Number(c.over_bytes),
  };
}

/**
 * The validator's diagnostics as field problems: each message starts with the
 * policy path it concerns ("rules[3].rate: ..."); for the edited rule the
 * path becomes the body key ("rate"). An overlap makes the change a conflict.
 */
export function changeError(diagnostics: Diagnostic[], ruleIndex?: number): PolicyChangeError {
  const problems: FieldProblem[] = [];
  let conflict = false;
  for (const d of diagnostics) {
    if (d.severity !== 'error') continue;
    const m = /^([A-Za-z0-9_.[\]]+): ([\s\S]*)$/.exec(d.message);
    let field = m?.[1] ?? 'policy';
    const reason = m?.[2] ?? d.message;
    if (ruleIndex !== undefined) {
      const own = `rules[${ruleIndex}]`;
      if (field === own) field = 'rule';
      else if (field.startsWith(`${own}.`)) field = field.slice(own.length + 1);
    }
    // Cross-rule overlap, as validatePolicy words it (src/policy/validate.ts checkAcrossRules).
    if (reason.startsWith('overlaps rule "')) conflict = true;
    problems.push({ field, reason });
  }
  return new PolicyChangeError(problems, conflict);
}
