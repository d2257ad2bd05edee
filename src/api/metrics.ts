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

/** The /metrics body. */
export function renderMetrics(rules: RuleView[], stats: StatsView, build: { version: string; layout: number }, sockets: ListeningSocket[] = []): string {
  const out = new Exposition();
  out.family('portshaper_build_info', 'gauge', 'Build of the running agent (always 1).', [[{ version: build.version, layout: build.layout }, 1]]);
  out.family('portshaper_rules', 'gauge', 'Rules in the policy in force.', [[{}, rules.length]]);

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
