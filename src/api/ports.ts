/**
 * "Know your ports": every listening socket joined with the rules that cover
 * its port and the traffic seen on it (GET /v1/ports, `portshaper ports`,
 * `portshaper top`), and the sampler that turns the per-port accounting of
 * unmatched traffic (ps_unmatched) into rates. The join is pure.
 */
import { readFileSync } from 'node:fs';
import type { PortEntry, PortFlag, PortListener, PortTraffic, UnmatchedTraffic } from './ports-schemas.js';
import type { RuleView } from './schemas.js';
import type { OwnedSocket } from './socket-table.js';
import type { UnmatchedRow } from '../kernel/unmatched.js';

type Direction = 'ingress' | 'egress';
const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];

/** What the join reads. */
export interface PortsInput {
  sockets: OwnedSocket[];
  rules: RuleView[];
  unmatched: UnmatchedTraffic[];
  /** net.ipv4.ip_local_port_range: where the kernel picks ports of outbound connections. */
  ephemeral: readonly [number, number];
}

/** Kernel default of net.ipv4.ip_local_port_range. */
export const DEFAULT_EPHEMERAL: readonly [number, number] = [32768, 60999];

/** net.ipv4.ip_local_port_range of this network namespace (the default when unreadable). */
export function ephemeralRange(procRoot = '/proc'): readonly [number, number] {
  try {
    const [lo, hi] = readFileSync(`${procRoot}/sys/net/ipv4/ip_local_port_range`, 'utf8').trim().split(/\s+/).map(Number);
    if (lo !== undefined && hi !== undefined && lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    // not Linux /proc, or not readable: the kernel default is the best guess
  }
  return DEFAULT_EPHEMERAL;
}

function emptyTraffic(): PortTraffic {
  return { rules: [], source: 'none', bitsPerSecond: 0, packetsPerSecond: 0, droppedPacketsPerSecond: 0, packets: 0, bytes: 0, droppedPackets: 0, markedPackets: 0 };
}

interface Draft extends PortEntry {
  to: number;
}

/**
 * One entry per (side, protocol, port or rule range): its listeners, and per
 * direction the rules that judge it with their counters and rates, or else
 * the unmatched traffic counted on it; with the flags worth a glance.
 * Sorted by side, port, protocol.
 */
export function joinPorts(input: PortsInput): PortEntry[] {
  const entries = new Map<string, Draft>();
  const entry = (side: 'local' | 'remote', protocol: 'tcp' | 'udp', from: number, to: number): Draft => {
    const key = `${side}/${protocol}/${from}-${to}`;
    let e = entries.get(key);
    if (!e) {
      e = { port: from, to, ...(from !== to ? { range: `${from}-${to}` } : {}), protocol, side, listeners: [], ephemeral: false, ingress: emptyTraffic(), egress: emptyTraffic(), flags: [] };
      entries.set(key, e);
    }
    return e;
  };

  for (const rule of input.rules) {
    for (const protocol of rule.protocol === 'any' ? (['tcp', 'udp'] as const) : [rule.protocol as 'tcp' | 'udp']) {
      const e = entry(rule.side === 'remote' ? 'remote' : 'local', protocol, rule.from, rule.to);
      for (const direction of DIRECTIONS) {
        const c = rule.counters[direction];
        if (!c) continue;
        const o = rule.observed[direction];
        const t = e[direction];
        t.rules.push({ name: rule.name, mode: rule.mode, rate: rule.rate, rateBitsPerSecond: rule.rateBitsPerSecond });
        t.source = 'rule';
        t.bitsPerSecond += o?.bitsPerSecond ?? 0;
        t.packetsPerSecond += o?.packetsPerSecond ?? 0;
        t.droppedPacketsPerSecond += o?.droppedPacketsPerSecond ?? 0;
        t.packets += c.passedPackets;
        t.bytes += c.passedBytes;
        t.droppedPackets += c.droppedPackets;
        t.markedPackets += c.markedPackets;
      }
    }
  }

  const ruleEntries = [...entries.values()];
  for (const s of input.sockets) {
    const covering = ruleEntries.filter((e) => e.side === 'local' && e.protocol === s.protocol && e.port <= s.port && s.port <= e.to);
    const listener: PortListener = { family: s.family, address: s.address, scope: s.scope, uid: s.uid, inode: s.inode, ...(s.process ? { process: s.process } : {}) };
    for (const e of covering.length ? covering : [entry('local', s.protocol, s.port, s.port)]) e.listeners.push(listener);
  }

  for (const u of input.unmatched) {
    const t = entry('local', u.protocol, u.port, u.port)[u.direction];
    if (t.source === 'rule') continue; // a rule judged it since the sample; its counters tell the story
    t.source = 'unmatched';
    t.bitsPerSecond += u.bitsPerSecond;
    t.packetsPerSecond += u.packetsPerSecond;
    t.packets += u.packets;
    t.bytes += u.bytes;
  }

  const [lo, hi] = input.ephemeral;
  const out: PortEntry[] = [];
  for (const { to: _to, ...e } of entries.values()) {
    const hasRules = e.ingress.rules.length + e.egress.rules.length > 0;
    e.ephemeral = e.side === 'local' && !hasRules && !e.listeners.length && lo <= e.port && e.port <= hi;
    e.flags = flagsOf(e);
    out.push(e);
  }
  return out.sort((a, b) => (a.side === b.side ? 0 : a.side === 'local' ? -1 : 1) || a.port - b.port || a.protocol.localeCompare(b.protocol));
}

/** What an operator should look at on one entry. */
function flagsOf(e: PortEntry): PortFlag[] {
  const flags: PortFlag[] = [];
  const rules = [...e.ingress.rules, ...e.egress.rules];
  const where = `${e.range ?? e.port}/${e.protocol}`;
  const limited = rules.some((r) => r.rateBitsPerSecond > 0);
  const wildcard = e.listeners.find((l) => l.scope === 'wildcard');
  if (wildcard && !limited) {
    flags.push({ code: 'wildcard-unlimited', message: `${wildcard.process?.command ?? 'a process'} listens on every address (${wildcard.address}) on ${where} and no rule limits it` });
  }
  if (e.side === 'local' && rules.length && !e.listeners.length) {
    const names = [...new Set(rules.map((r) => `"${r.name}"`))].join(', ');
    flags.push({ code: 'no-listener', message: `rule ${names} names ${where} but nothing listens on it: a typo in the policy, or a service that is down?` });
  }
  const nonRoot = e.port < 1024 && !e.range ? e.listeners.find((l) => l.uid !== 0) : undefined;
  if (nonRoot) {
    flags.push({
      code: 'privileged-port-non-root',
      message: `${where} is below 1024 but held by uid ${nonRoot.uid}${nonRoot.process ? ` (${nonRoot.process.command}, pid ${nonRoot.process.pid})` : ''}: it had CAP_NET_BIND_SERVICE or a lowered net.ipv4.ip_unprivileged_port_start`,
    });
  }
  return flags;
}

/** Samples kept: one a second, so rates cover the last 5 s (as the rules' rates do). */
const RING = 6;

interface UnmatchedSample {
  ms: number;
  rows: Map<string, UnmatchedRow>;
}

/**
 * Rates of unmatched traffic per port from periodic reads of ps_unmatched.
 * Reads nothing while no interface counts (the map is then all zeros, and a
 * read is PS_UNMATCHED_SIZE × CPUs × 16 bytes).
 */
export class UnmatchedSampler {
  private samples: UnmatchedSample[] = [];

  constructor(
    private readonly read: () => UnmatchedRow[],
    readonly counting: () => boolean,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Take one sample (call about once a second). */
  sample(): void {
    if (!this.counting()) {
      this.samples = [];
      return;
    }
    const rows = new Map(this.read().map((r) => [`${r.direction}/${r.protocol}/${r.port}`, r]));
    this.samples.push({ ms: this.now(), rows });
    if (this.samples.length > RING) this.samples.shift();
  }

  /** Seconds between the oldest and newest sample (0 until there are two). */
  windowSeconds(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    return first && last ? (last.ms - first.ms) / 1000 : 0;
  }

  /** Totals of the latest sample with their rates over the window. */
  traffic(): UnmatchedTraffic[] {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last) return [];
    const seconds = this.windowSeconds();
    return [...last.rows.entries()].map(([key, r]) => {
      const before = first.rows.get(key);
      const rate = (now: number, then = 0) => (seconds > 0 && now >= then ? (now - then) / seconds : 0);
      return {
        direction: r.direction,
        protocol: r.protocol,
        port: r.port,
        packets: r.packets,
        bytes: r.bytes,
        bitsPerSecond: Math.round(rate(r.bytes, before?.bytes) * 8),
        packetsPerSecond: Math.round(rate(r.packets, before?.packets)),
      };
    });
  }
}
