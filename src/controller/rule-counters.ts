/**
 * The one per-rule counter and rate reader: rule name → counters per
 * direction and observed rates, for the API's views, /metrics and the
 * agent's stats log alike.
 *
 * Observed rate (one definition): the rule's counters read now, minus the
 * background sampler's reading of the same slots that is the newest at least
 * WINDOW_MS (5 s) older (or the oldest it holds, when none is that old yet),
 * divided by the time between the two readings. Each bucket is compared with
 * its own reading and the rates are added; windowSeconds is the longest of
 * those windows (0: no reading to compare with yet). The sampler reads at
 * most CHUNK_SLOTS slots a second, so a window is 5-6 s up to 16,384 buckets
 * and 5 s to 5 s + buckets/16,384 s above (5-9 s at 65,536).
 */
import type { Logger } from 'pino';
import { ALL_COUNTER_OFFSETS, CounterRangeReader, sumCounterFields } from '../kernel/counters.js';
import type { DataPlane } from '../kernel/dataplane.js';
import type { Direction } from '../kernel/desired.js';
import { psCounters, type PsCounters } from '../kernel/layout.js';
import type { AgentState } from './agent.js';
import { RATE_FIELDS, RATE_OFFSETS, RateSampler, type CounterSource } from './sampler.js';

/** A rule's counters in one direction, summed over its buckets and CPUs. */
export interface CounterTotals {
  passedPackets: number;
  passedBytes: number;
  droppedPackets: number;
  droppedBytes: number;
  overLimitPackets: number;
  overLimitBytes: number;
  markedPackets: number;
  markedBytes: number;
  synDrops: number;
  newClients: number;
}

/** Rates of a rule in one direction over the window (see the module comment). */
export interface ObservedRate {
  bitsPerSecond: number;
  packetsPerSecond: number;
  droppedBitsPerSecond: number;
  droppedPacketsPerSecond: number;
  windowSeconds: number;
}

export interface DirectionReading {
  counters: CounterTotals;
  observed: ObservedRate;
}

/** A rule's counters and rates in the directions it has buckets in. */
export type RuleReading = Partial<Record<Direction, DirectionReading>>;

/** Passed and dropped packets and bytes of every bucket of one direction. */
export interface DirectionSums {
  direction: Direction;
  passedPackets: number;
  passedBytes: number;
  droppedPackets: number;
  droppedBytes: number;
}

/** What the reader needs of the agent. */
export interface CounterAgent {
  readonly state: AgentState;
  readonly dataPlane: Pick<DataPlane, 'cpus' | 'maps'>;
}

const DIRECTIONS: readonly Direction[] = ['ingress', 'egress'];
/** Index of each ps_counters field in a reading of ALL_COUNTER_OFFSETS. */
const F = Object.fromEntries(psCounters.fields.map((f, i) => [f.name, i])) as Record<keyof PsCounters, number>;
const WIDTH = ALL_COUNTER_OFFSETS.length;
/** Fields of a full reading in the sampler's order (RATE_OFFSETS). */
const RATE_INDEX = [F.pass_bytes, F.pass_pkts, F.drop_bytes, F.drop_pkts];
/** Up to this many slots, read one at a time: a batch reads every slot below the highest wanted one. */
const FEW_SLOTS = 64;

/** Reads rules' counters now and their observed rates against the sampler's readings. */
export class RuleCounters {
  readonly sampler: RateSampler;
  private range: { dp: CounterAgent['dataPlane']; reader: CounterRangeReader } | undefined;
  private indexed: { slots: AgentState['slots']; buckets: AgentState['bucketsByRule']; index: SlotIndex } | undefined;
  /** Full readings, WIDTH numbers per slot, kept across calls. */
  private all = new Float64Array(0);
  private readonly sum = new Float64Array(WIDTH);
  private readonly rate = new Float64Array(RATE_FIELDS);

  constructor(
    private readonly agent: CounterAgent,
    log: Logger,
    chunkSlots?: number,
  ) {
    const source: CounterSource = {
      slotEnd: () => this.slotEnd(),
      read: (from, count, offsets, out) => this.reader().read(from, count, offsets, out),
    };
    this.sampler = new RateSampler(source, log, chunkSlots);
  }

  /** One more user of the rates (see RateSampler.start). */
  start(intervalMs = 1000): void {
    this.sampler.start(intervalMs);
  }

  stop(): void {
    this.sampler.stop();
  }

  /** Counters and observed rates of the named rules (default: every rule), read now; unknown names are left out. */
  read(names?: Iterable<string>): Map<string, RuleReading> {
    const { byRule } = this.index();
    const wanted: [string, RuleSlots][] = [];
    let count = 0;
    let max = -1;
    for (const name of names ?? byRule.keys()) {
      const mine = byRule.get(name);
      if (!mine) continue;
      wanted.push([name, mine]);
      count += mine.count;
      if (mine.max > max) max = mine.max;
    }
    const now = performance.now();
    const { values, indexOf } = this.readNow(wanted, count, max);
    const out = new Map<string, RuleReading>();
    for (const [name, mine] of wanted) {
      const reading: RuleReading = {};
      if (mine.ingress.length) reading.ingress = this.readingOf(mine.ingress, values, indexOf, now);
      if (mine.egress.length) reading.egress = this.readingOf(mine.egress, values, indexOf, now);
      out.set(name, reading);
    }
    return out;
  }

  /** One rule's reading; undefined when no rule has that name. */
  readRule(name: string): RuleReading | undefined {
    return this.read([name]).get(name);
  }

  /** Passed and dropped counters of every bucket, by direction, read now (one batch over the slots in use). */
  totals(): DirectionSums[] {
    const { end, byDirection } = this.index();
    const values = this.fullReading(end, RATE_FIELDS, (out) => this.reader().read(0, end, RATE_OFFSETS, out));
    return DIRECTIONS.flatMap((direction) => {
      const mine = byDirection[direction];
      if (!mine.length) return [];
      const s = { direction, passedPackets: 0, passedBytes: 0, droppedPackets: 0, droppedBytes: 0 };
      for (const slot of mine) {
        const at = slot * RATE_FIELDS;
        s.passedBytes += values[at]!;
        s.passedPackets += values[at + 1]!;
        s.droppedBytes += values[at + 2]!;
        s.droppedPackets += values[at + 3]!;
      }
      return [s];
    });
  }

  /** One direction of one rule: counters summed, rates added bucket by bucket against each one's sampled reading. */
  private readingOf(mine: number[], values: Float64Array, indexOf: (slot: number) => number, now: number): DirectionReading {
    // Scratch kept on the reader: a typed array per rule costs more than reading its counters (GC of 65,536 backing stores).
    const sum = this.sum.fill(0);
    const rate = this.rate.fill(0);
    let window = 0;
    for (const slot of mine) {
      const at = indexOf(slot);
      for (let k = 0; k < WIDTH; k++) sum[k]! += values[at + k]!;
      const base = this.sampler.baseline(slot, now);
      const seconds = base ? (now - base.ms) / 1000 : 0;
      if (!base || seconds <= 0) continue;
      window = Math.max(window, seconds);
      for (let f = 0; f < RATE_FIELDS; f++) {
        // A slot handed to a new bucket since (counters back at 0) counts 0.
        const delta = values[at + RATE_INDEX[f]!]! - base.values[base.at + f]!;
        if (delta > 0) rate[f]! += delta / seconds;
      }
    }
    const [passBytes = 0, passPkts = 0, dropBytes = 0, dropPkts = 0] = rate;
    return {
      counters: {
        passedPackets: sum[F.pass_pkts]!,
        passedBytes: sum[F.pass_bytes]!,
        droppedPackets: sum[F.drop_pkts]!,
        droppedBytes: sum[F.drop_bytes]!,
        overLimitPackets: sum[F.over_pkts]!,
        overLimitBytes: sum[F.over_bytes]!,
        markedPackets: sum[F.mark_pkts]!,
        markedBytes: sum[F.mark_bytes]!,
        synDrops: sum[F.syn_drops]!,
        newClients: sum[F.new_clients]!,
      },
      observed: {
        bitsPerSecond: Math.round(passBytes * 8),
        packetsPerSecond: Math.round(passPkts),
        droppedBitsPerSecond: Math.round(dropBytes * 8),
        droppedPacketsPerSecond: Math.round(dropPkts),
        windowSeconds: Math.round(window * 1000) / 1000,
      },
    };
  }

  /**
   * Every field of the wanted rules' slots (count of them, the highest max):
   * one lookup each for a few, else one batch over [0, max]. Returns the
   * values and where a slot's WIDTH numbers start.
   */
  private readNow(wanted: [string, RuleSlots][], count: number, max: number): { values: Float64Array; indexOf: (slot: number) => number } {
    if (count > FEW_SLOTS) {
      const values = this.fullReading(max + 1, WIDTH, (out) => this.reader().read(0, max + 1, ALL_COUNTER_OFFSETS, out));
      return { values, indexOf: (slot) => slot * WIDTH };
    }
    const dp = this.agent.dataPlane;
    const index = new Map<number, number>();
    const values = new Float64Array(count * WIDTH);
    for (const [, mine] of wanted) {
      for (const slot of [...mine.ingress, ...mine.egress]) {
        if (index.has(slot)) continue;
        index.set(slot, index.size * WIDTH);
        readSlotInto(dp, slot, values, index.get(slot)!);
      }
    }
    return { values, indexOf: (slot) => index.get(slot)! };
  }

  /** Read slots [0, end) into the kept array (grown when too small); slots not read are 0. */
  private fullReading(end: number, width: number, read: (out: Float64Array) => number): Float64Array {
    if (this.all.length < end * width) this.all = new Float64Array(end * width);
    const got = read(this.all);
    this.all.fill(0, got * width, end * width);
    return this.all;
  }

  private reader(): CounterRangeReader {
    const dp = this.agent.dataPlane;
    if (this.range?.dp !== dp) this.range = { dp, reader: new CounterRangeReader(dp) };
    return this.range.reader;
  }

  /**
   * The slots of every rule by direction, of every bucket by direction, and
   * one past the highest slot in use (slots are handed out lowest first):
   * derived once per slot assignment, not at every read. A change of limits
   * keeps the slot map and the rule → buckets map (the very objects), so it
   * does not rebuild this index of every rule.
   */
  private index(): SlotIndex {
    const state = this.agent.state;
    if (this.indexed?.slots === state.slots && this.indexed.buckets === state.bucketsByRule) return this.indexed.index;
    const { policy, slots, bucketsByRule } = state;
    const index: SlotIndex = { end: 0, byRule: new Map(), byDirection: { ingress: [], egress: [] } };
    for (const rule of policy.rules) {
      const mine: RuleSlots = { ingress: [], egress: [], count: 0, max: -1 };
      for (const b of bucketsByRule.get(rule.name) ?? []) {
        const slot = slots.get(b.key);
        if (slot === undefined) continue;
        mine[b.direction].push(slot);
        index.byDirection[b.direction].push(slot);
        mine.count++;
        if (slot > mine.max) mine.max = slot;
        if (slot >= index.end) index.end = slot + 1;
      }
      index.byRule.set(rule.name, mine);
    }
    this.indexed = { slots: state.slots, buckets: state.bucketsByRule, index };
    return index;
  }

  private slotEnd(): number {
    return this.index().end;
  }
}

/** The slots of one rule's buckets, by direction. */
interface RuleSlots {
  ingress: number[];
  egress: number[];
  count: number;
  max: number;
}

interface SlotIndex {
  /** One past the highest slot in use. */
  end: number;
  /** In policy order. */
  byRule: Map<string, RuleSlots>;
  byDirection: Record<Direction, number[]>;
}

/** Sum every field of one slot's per-CPU value into out[at...] (a single lookup). */
export function readSlotInto(dp: CounterAgent['dataPlane'], slot: number, out: Float64Array, at: number): void {
  const raw = dp.maps.ps_counters.get(slot);
  if (raw) sumCounterFields(raw, 0, dp.cpus, [0], ALL_COUNTER_OFFSETS, out.subarray(at));
  else out.fill(0, at, at + WIDTH);
}
