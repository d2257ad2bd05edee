/**
 * The rule counter reader and its sampler over a stand-in data plane (a
 * per-CPU ps_counters buffer) and a fake clock: counters summed per rule and
 * direction, observed rates against the reading at least 5 s older, and the
 * sampler reading one chunk of slots per tick.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { agentState } from '../../src/controller/agent.js';
import { RuleCounters } from '../../src/controller/rule-counters.js';
import { RATE_FIELDS, RateSampler, WINDOW_MS, type CounterSource } from '../../src/controller/sampler.js';
import type { DesiredBucket, Direction } from '../../src/kernel/desired.js';
import { psCounters, zeroCounters, type PsCounters } from '../../src/kernel/layout.js';
import { roundUp8 } from '../../src/kernel/maps.js';
import type { ValidPolicy } from '../../src/policy/index.js';

const log = pino({ level: 'silent' });
const CPUS = 2;
const STEP = roundUp8(psCounters.size);
const STRIDE = STEP * CPUS;

/** A ps_counters map of `size` slots whose values the test sets, split across CPUs. */
function counterMap(size: number) {
  const raw = Buffer.alloc(STRIDE * size);
  const reads: { from: number; count: number }[] = [];
  return {
    raw,
    reads,
    set(slot: number, c: Partial<PsCounters>) {
      // Half on each CPU (odd values: the remainder on CPU 0), so the sum over CPUs is what the test set.
      for (let cpu = 0; cpu < CPUS; cpu++) {
        const share = Object.fromEntries(Object.entries({ ...zeroCounters(), ...c }).map(([k, v]) => [k, cpu === 0 ? v - v / 2n : v / 2n]));
        psCounters.encode(share as PsCounters, raw, slot * STRIDE + cpu * STEP);
      }
    },
    dataPlane: {
      cpus: CPUS,
      maps: {
        ps_counters: {
          stride: STRIDE,
          get: (slot: number) => (slot < size ? Buffer.from(raw.subarray(slot * STRIDE, (slot + 1) * STRIDE)) : null),
          readRange: (from: number, limit: number, into?: { keys: Buffer; values: Buffer }) => {
            const count = Math.max(0, Math.min(limit, size - from));
            reads.push({ from, count });
            const values = into && into.values.length >= count * STRIDE ? into.values : Buffer.alloc(count * STRIDE);
            raw.copy(values, 0, from * STRIDE, (from + count) * STRIDE);
            return { keys: new Uint32Array(count), values: values.subarray(0, count * STRIDE), count };
          },
        },
      },
    },
  };
}

/** An agent state of rules with one bucket per direction named, slots given in order. */
function stateOf(rules: { name: string; directions: Direction[] }[]) {
  const buckets: DesiredBucket[] = [];
  const slots = new Map<string, number>();
  for (const r of rules) {
    for (const direction of r.directions) {
      const key = `${r.name}/${direction}`;
      buckets.push({ key, rule: r.name, direction } as DesiredBucket);
      slots.set(key, slots.size);
    }
  }
  const policy = { rules: rules.map((r) => ({ name: r.name })) } as unknown as ValidPolicy;
  return agentState(policy, { buckets, ports: [], interfaces: [] }, slots, '');
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('RuleCounters', () => {
  it('sums counters per rule and direction and rates them against the reading at least 5 s older', () => {
    const map = counterMap(3);
    const state = stateOf([
      { name: 'web', directions: ['ingress', 'egress'] },
      { name: 'dns', directions: ['egress'] },
    ]);
    const reader = new RuleCounters({ state, dataPlane: map.dataPlane }, log);
    // No reading yet: counters, but no window.
    map.set(1, { pass_pkts: 7n, pass_bytes: 7000n, mark_pkts: 3n, syn_drops: 1n });
    expect(reader.readRule('web')?.egress).toEqual({
      counters: expect.objectContaining({ passedPackets: 7, passedBytes: 7000, markedPackets: 3, synDrops: 1, droppedPackets: 0 }),
      observed: { bitsPerSecond: 0, packetsPerSecond: 0, droppedBitsPerSecond: 0, droppedPacketsPerSecond: 0, windowSeconds: 0 },
    });

    reader.start(1000);
    // 1,000 packets of 1,000 bytes passed and 100 dropped on web/egress each second, for 10 s.
    let pkts = 7n;
    for (let s = 1; s <= 10; s++) {
      pkts += 1000n;
      map.set(1, { pass_pkts: pkts, pass_bytes: pkts * 1000n, drop_pkts: BigInt(s) * 100n, drop_bytes: BigInt(s) * 100_000n });
      vi.advanceTimersByTime(1000);
    }
    // Half a second after the last tick: compared with the reading 5 s before that tick, over 5.5 s.
    vi.advanceTimersByTime(500);
    map.set(1, { pass_pkts: pkts + 500n, pass_bytes: (pkts + 500n) * 1000n, drop_pkts: 1050n, drop_bytes: 1_050_000n });
    const all = reader.read();
    expect([...all.keys()]).toEqual(['web', 'dns']);
    const egress = all.get('web')!.egress!;
    expect(egress.observed).toEqual({ bitsPerSecond: 8_000_000, packetsPerSecond: 1000, droppedBitsPerSecond: 800_000, droppedPacketsPerSecond: 100, windowSeconds: 5.5 });
    expect(egress.counters.passedPackets).toBe(Number(pkts + 500n));
    expect(all.get('web')!.ingress!.observed.bitsPerSecond).toBe(0);
    expect(all.get('dns')).toEqual({ egress: expect.objectContaining({ counters: expect.objectContaining({ passedPackets: 0 }) }) });
    expect(reader.read(['nope']).size).toBe(0);
    reader.stop();
  });

  it('a slot whose counters went back down (handed to a new bucket) counts no rate', () => {
    const map = counterMap(1);
    const reader = new RuleCounters({ state: stateOf([{ name: 'a', directions: ['egress'] }]), dataPlane: map.dataPlane }, log);
    map.set(0, { pass_pkts: 5000n, pass_bytes: 5_000_000n });
    reader.sampler.sample();
    vi.advanceTimersByTime(WINDOW_MS);
    map.set(0, { pass_pkts: 10n, pass_bytes: 10_000n });
    expect(reader.readRule('a')!.egress!.observed).toMatchObject({ bitsPerSecond: 0, packetsPerSecond: 0, windowSeconds: 5 });
  });

  it('totals adds every bucket by direction', () => {
    const map = counterMap(3);
    const reader = new RuleCounters({ state: stateOf([{ name: 'a', directions: ['ingress', 'egress'] }, { name: 'b', directions: ['egress'] }]), dataPlane: map.dataPlane }, log);
    map.set(0, { pass_pkts: 1n, pass_bytes: 100n });
    map.set(1, { pass_pkts: 2n, pass_bytes: 200n, drop_pkts: 1n, drop_bytes: 50n });
    map.set(2, { pass_pkts: 3n, pass_bytes: 300n });
    expect(reader.totals()).toEqual([
      { direction: 'ingress', passedPackets: 1, passedBytes: 100, droppedPackets: 0, droppedBytes: 0 },
      { direction: 'egress', passedPackets: 5, passedBytes: 500, droppedPackets: 1, droppedBytes: 50 },
    ]);
  });
});

describe('RateSampler', () => {
  /** A source of `end` slots whose every field reads as the slot's number plus the tick. */
  function source(end: number) {
    let tick = 0;
    const reads: [number, number][] = [];
    const src: CounterSource = {
      slotEnd: () => end,
      read(from, count, offsets, out) {
        reads.push([from, count]);
        for (let i = 0; i < count; i++) for (let k = 0; k < offsets.length; k++) out[i * offsets.length + k] = from + i + tick;
        tick++;
        return count;
      },
    };
    return { src, reads };
  }

  it('reads one chunk per tick, in turn, and keeps enough readings for a 5 s baseline', () => {
    const { src, reads } = source(5);
    const sampler = new RateSampler(src, log, 2);
    sampler.start(1000);
    vi.advanceTimersByTime(8000);
    // Chunks [0,2), [2,4), [4,5) take turns: the first at start, then one a second.
    expect(reads.slice(0, 4)).toEqual([[0, 2], [2, 2], [4, 1], [0, 2]]);
    expect(reads).toHaveLength(9);
    // Each chunk is read every 3 s: 3 readings cover 6 s, so one is at least 5 s old.
    const now = performance.now();
    const base = sampler.baseline(1, now)!;
    expect(now - base.ms).toBeGreaterThanOrEqual(WINDOW_MS);
    expect(base.at).toBe(1 * RATE_FIELDS);
    // Slot 1's chunk was read at 0, 3 and 6 s: at 8 s the newest reading at least 5 s old is the one of 3 s.
    expect(base.ms).toBe(3000);
    expect(base.values[base.at]).toBe(1 + 3);
    expect(sampler.baseline(7, now)).toBeUndefined();
    sampler.stop();
  });

  it('runs while it has users: the last stop stops it', () => {
    const { src, reads } = source(1);
    const sampler = new RateSampler(src, log);
    sampler.start(1000);
    sampler.start(1000);
    sampler.stop();
    expect(sampler.running).toBe(true);
    vi.advanceTimersByTime(2000);
    sampler.stop();
    expect(sampler.running).toBe(false);
    const before = reads.length;
    vi.advanceTimersByTime(5000);
    expect(reads.length).toBe(before);
  });
});
