/**
 * The clients of a rule with per-client limits: how many the table holds,
 * how many were added (so evictions = added − alive), and the top ones by
 * bytes or by drops. Read from the LRU map with batch syscalls while the
 * program keeps running; the cost grows with the table, so it is only read
 * when asked (the API), never by the 1 Hz sampler.
 */
import { readClients, type ClientEntry } from '../kernel/counters.js';
import type { DataPlane } from '../kernel/dataplane.js';
import type { DesiredBucket } from '../kernel/desired.js';
import type { PsCounters } from '../kernel/layout.js';

/** How to rank a rule's clients. */
export type ClientOrder = 'bytes' | 'drops';

/** One client as the API shows it. */
export interface ClientRow {
  address: string;
  direction: 'ingress' | 'egress';
  passedPackets: number;
  passedBytes: number;
  droppedPackets: number;
  droppedBytes: number;
  /** Seconds since its last packet. */
  idleSeconds: number;
}

/** A rule's clients: counts and the top rows. */
export interface ClientsSummary {
  rule: string;
  /** Clients the table holds now for this rule. */
  clients: number;
  /** Clients added since the rule's buckets were created (first seen, or seen again after eviction). */
  added: number;
  /** added − clients: forgotten because the table was full. */
  evicted: number;
  by: ClientOrder;
  top: ClientRow[];
}

/**
 * Summarise the clients of one rule's buckets. counters holds each slot's
 * counters (for new_clients); now is bpf_ktime_get_ns()'s clock
 * (CLOCK_MONOTONIC, as process.hrtime is).
 */
export function clientsSummary(
  dp: DataPlane,
  rule: string,
  buckets: { bucket: DesiredBucket; slot: number }[],
  counters: Map<number, PsCounters>,
  opts: { top: number; by: ClientOrder; nowNs: bigint },
): ClientsSummary {
  const direction = new Map(buckets.map(({ bucket, slot }) => [slot, bucket.direction]));
  const entries = readClients(dp, new Set(direction.keys()));
  let added = 0;
  for (const { slot } of buckets) added += Number(counters.get(slot)?.new_clients ?? 0n);
  const key = (e: ClientEntry) => (opts.by === 'drops' ? e.state.drop_pkts : e.state.pass_bytes);
  const top = entries
    .sort((a, b) => (key(b) > key(a) ? 1 : key(b) < key(a) ? -1 : 0))
    .slice(0, opts.top)
    .map((e) => ({
      address: e.address,
      direction: direction.get(e.slot) ?? 'ingress',
      passedPackets: Number(e.state.pass_pkts),
      passedBytes: Number(e.state.pass_bytes),
      droppedPackets: Number(e.state.drop_pkts),
      droppedBytes: Number(e.state.drop_bytes),
      idleSeconds: Math.max(0, Number(opts.nowNs - e.state.last_ns) / 1e9),
    }));
  return { rule, clients: entries.length, added, evicted: Math.max(0, added - entries.length), by: opts.by, top };
}
