/**
 * Prometheus text exposition (format 0.0.4) of the rules' counters and
 * configured rates and of the global counters. Counters end in _total,
 * units are base units (bytes, bits per second), every family has HELP and
 * TYPE, and label values are escaped: `promtool check metrics` accepts it.
 * Rates are in bytes per second because promtool insists on base units
 * ("use base unit bytes instead of bits"); the JSON API keeps bits/s.
 */
import type { RuleView, StatsView } from './schemas.js';
import type { ListeningSocket } from './socket-table.js';

/** Content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Record<string, string | number>;

/** Counters of every rule added up, for one direction. */
export interface DirectionTotals {
  direction: 'ingress' | 'egress';
  passedPackets: number;
  passedBytes: number;
  droppedPackets: number;
  droppedBytes: number;
}

/**
 * What /metrics shows besides the per-rule views: the policy in force and its
 * reloads, for fleet-wide views (drift, rejected ConfigMaps), and totals over
 * every rule, so that capping per-rule series (and the work per scrape) to
 * maxRules loses no traffic.
 */
export interface MetricsState {
  /** The file in force. */
  source: string;
  /** sha256 of its text. */
  hash: string;
  reloads: { applied: number; rejected: number; failed: number };
  lastReloadSuccessful: boolean;
  /** Rules that get per-rule series (metrics.maxRules). */
  maxRules: number;
  /** Rules in the policy in force. */
  ruleCount: number;
  totals: DirectionTotals[];
}

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'counter' | 'gauge', help: string, samples: [Labels, number][]): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) this.lines.push(`${name}${formatLabels(labels)} ${formatValue(value)}`);
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/**
 * The /metrics body. Per-rule series (about 16 per rule, times every node)
 * are kept to the first state.maxRules rules in policy order (the caller
 * reads only those), so the set of series stays stable between scrapes;
 * totals over all rules are always there.
 */
export function renderMetrics(
  views: RuleView[],
  stats: StatsView,
  build: { version: string; layout: number },
  state: MetricsState,
  sockets: ListeningSocket[] = [],
): string {
  const out = new Exposition();
  out.family('portshaper_build_info', 'gauge', 'Build of the running agent (always 1).', [[{ version: build.version, layout: build.layout }, 1]]);
  out.family('portshaper_rules', 'gauge', 'Rules in the policy in force.', [[{}, state.ruleCount]]);
  out.family('portshaper_policy_info', 'gauge', 'The policy in force: its file and the sha256 of its text (always 1); count by (hash) across nodes shows drift.', [
    [{ hash: state.hash, source: state.source }, 1],
  ]);
  out.family('portshaper_policy_reloads_total', 'counter', 'Policy reloads (a changed file, or SIGHUP), by result: applied, rejected (invalid, the running policy stays), failed (kernel error).', [
    [{ result: 'applied' }, state.reloads.applied],
    [{ result: 'rejected' }, state.reloads.rejected],
    [{ result: 'failed' }, state.reloads.failed],
  ]);
  out.family('portshaper_policy_last_reload_successful', 'gauge', '1 when the last policy reload was applied (or none happened), 0 when the file on disk was refused.', [
    [{}, state.lastReloadSuccessful ? 1 : 0],
  ]);
  const rules = views.slice(0, state.maxRules);
  out.family('portshaper_metrics_rules_omitted', 'gauge', 'Rules left out of the per-rule series by metrics.maxRules (they count in the all-rules totals).', [[{}, state.ruleCount - rules.length]]);
  const totals = state.totals.flatMap((t) => [
    { labels: { direction: t.direction, verdict: 'pass' }, packets: t.passedPackets, bytes: t.passedBytes },
    { labels: { direction: t.direction, verdict: 'drop' }, packets: t.droppedPackets, bytes: t.droppedBytes },
  ]);
  out.family('portshaper_all_rules_packets_total', 'counter', 'Packets judged by any rule, by direction and verdict: every rule, also those left out of per-rule series (sampled each second).', totals.map((t) => [t.labels, t.packets]));
  out.family('portshaper_all_rules_bytes_total', 'counter', 'Wire bytes judged by any rule, by direction and verdict.', totals.map((t) => [t.labels, t.bytes]));

  const packets: [Labels, number][] = [];
  const bytes: [Labels, number][] = [];
  const overPackets: [Labels, number][] = [];
  const markedPackets: [Labels, number][] = [];
  const synDrops: [Labels, number][] = [];
  const clientsAdded: [Labels, number][] = [];
  const rates: [Labels, number][] = [];
  const bursts: [Labels, number][] = [];
  const observed: [Labels, number][] = [];
  for (const rule of rules) {
    const base = { rule: rule.name, port: String(rule.port), protocol: rule.protocol };
    for (const direction of ['ingress', 'egress'] as const) {
      const c = rule.counters[direction];
      if (!c) continue;
      const labels = { ...base, direction };
      packets.push([{ ...labels, verdict: 'pass' }, c.passedPackets], [{ ...labels, verdict: 'drop' }, c.droppedPackets]);
      bytes.push([{ ...labels, verdict: 'pass' }, c.passedBytes], [{ ...labels, verdict: 'drop' }, c.droppedBytes]);
      overPackets.push([{ ...labels, mode: rule.mode }, c.overLimitPackets]);
      markedPackets.push([labels, c.markedPackets]);
      synDrops.push([labels, c.synDrops]);
      clientsAdded.push([labels, c.newClients]);
      rates.push([labels, rule.rateBitsPerSecond / 8]);
      bursts.push([labels, rule.burstBytes]);
      const o = rule.observed[direction];
      if (o) observed.push([labels, o.bitsPerSecond / 8]);
    }
  }
  out.family('portshaper_packets_total', 'counter', 'Packets judged by a rule, by verdict (pass or drop).', packets);
  out.family('portshaper_bytes_total', 'counter', 'Wire bytes judged by a rule, by verdict (pass or drop).', bytes);
  out.family('portshaper_over_limit_packets_total', 'counter', 'Monitor mode: packets passed although over the limit.', overPackets);
  out.family('portshaper_ecn_marked_packets_total', 'counter', 'Packets passed with ECN CE set (shaping past the ecn delay, or policing in the ECN band).', markedPackets);
  out.family('portshaper_syn_drops_total', 'counter', 'New connections (SYN) refused by a connection limit; also in portshaper_packets_total{verdict="drop"}.', synDrops);
  out.family(
    'portshaper_clients_added_total',
    'counter',
    'Clients added to the per-client table for a rule (first seen, or seen again after eviction); GET /v1/rules/{name}/clients lists them.',
    clientsAdded,
  );
  out.family('portshaper_rule_rate_bytes_per_second', 'gauge', 'Configured rate of a rule in bytes/s (bit/s ÷ 8); 0 means unlimited (count only).', rates);
  out.family('portshaper_rule_burst_bytes', 'gauge', 'Configured bucket depth of a rule.', bursts);
  out.family('portshaper_rule_observed_bytes_per_second', 'gauge', 'Passed wire bytes/s measured by the agent over the last seconds.', observed);

  const globalPackets: [Labels, number][] = [];
  const globalBytes: [Labels, number][] = [];
  for (const row of stats.interfaces) {
    for (const kind of ['nonIp', 'unparsed', 'fragment', 'unmatched'] as const) {
      const labels = { interface: row.interface, direction: row.direction, kind: snake(kind) };
      globalPackets.push([labels, row[kind].packets]);
      globalBytes.push([labels, row[kind].bytes]);
    }
  }
  out.family('portshaper_interface_packets_total', 'counter', 'Packets no rule accounts for on an interface, by kind (non_ip, unparsed, fragment, unmatched); matched traffic is counted per rule.', globalPackets);
  out.family('portshaper_interface_bytes_total', 'counter', 'Bytes seen on an interface, by kind.', globalBytes);
  out.family('portshaper_listening_sockets', 'gauge', 'Listening TCP / bound unconnected UDP sockets on a port of this host (IPv4 and IPv6 together); the series disappears with the last one.', listenerCounts(sockets));
  return out.text();
}

/** Sockets per (port, protocol): one series per listening port, so bounded by the host's few listeners. */
function listenerCounts(sockets: ListeningSocket[]): [Labels, number][] {
  const counts = new Map<string, number>();
  for (const s of sockets) counts.set(`${s.port}/${s.protocol}`, (counts.get(`${s.port}/${s.protocol}`) ?? 0) + 1);
  return [...counts.entries()]
    .map(([key, n]) => [key.split('/'), n] as const)
    .sort(([a], [b]) => Number(a[0]) - Number(b[0]) || a[1]!.localeCompare(b[1]!))
    .map(([[port, protocol], n]) => [{ port: port!, protocol: protocol! }, n]);
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (!entries.length) return '';
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(String(v))}"`).join(',')}}`;
}

/** Label values escape backslash, double quote and newline. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  return Number.isFinite(value) ? String(value) : value > 0 ? '+Inf' : value < 0 ? '-Inf' : 'NaN';
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
