/**
 * The background counter sampler behind the observed rates. It keeps, per
 * slot, a few recent readings of the four counters rates need (passed and
 * dropped bytes and packets): the baselines a fresh reading is compared with
 * (see RuleCounters for the definition of "observed").
 *
 * Cost is bounded per tick, not per table: each tick reads one chunk of at
 * most CHUNK_SLOTS slots with batch lookups into buffers kept across ticks,
 * and the chunks take turns. Up to CHUNK_SLOTS slots in use every slot is
 * read every tick (1 s); at 65,536 slots each is read every 4 s, so the 1 Hz
 * tick costs what 16,384 slots cost. A chunk keeps just enough readings to
 * hold one at least WINDOW_MS old.
 */
import type { Logger } from 'pino';
import { counterOffset } from '../kernel/counters.js';

/** Readings are compared with one at least this old: rates cover the last 5 s (a little more between ticks). */
export const WINDOW_MS = 5000;
/** Slots read per tick. */
export const CHUNK_SLOTS = 16_384;
/** Fields sampled per slot, in this order: passed bytes, passed packets, dropped bytes, dropped packets. */
export const RATE_OFFSETS: readonly number[] = (['pass_bytes', 'pass_pkts', 'drop_bytes', 'drop_pkts'] as const).map(counterOffset);
export const RATE_FIELDS = RATE_OFFSETS.length;

/** Where the sampler reads: the slots in use and their counters. */
export interface CounterSource {
  /** One past the highest slot in use (slots are handed out lowest first). */
  slotEnd(): number;
  /** Sum fields `offsets` of slots [from, from + count) into out (offsets.length numbers per slot); returns the slots read. */
  read(from: number, count: number, offsets: readonly number[], out: Float64Array): number;
}

/** A slot's reading to compare with: RATE_FIELDS numbers at values[at...], taken at ms (performance.now()). */
export interface Baseline {
  values: Float64Array;
  at: number;
  ms: number;
}

/** The readings of one chunk of slots, oldest overwritten first. */
interface Ring {
  ms: Float64Array;
  values: Float64Array[];
  /** Index the next reading goes to. */
  next: number;
  /** Readings held. */
  size: number;
}

/** Samples the counters of the slots in use at a fixed interval while it has users. */
export class RateSampler {
  private rings: (Ring | undefined)[] = [];
  private tick = 0;
  private timer: NodeJS.Timeout | undefined;
  private intervalMs = 1000;
  private users = 0;
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly source: CounterSource,
    private readonly log: Logger,
    private readonly chunkSlots = CHUNK_SLOTS,
  ) {}

  /** Whether the timer runs. */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /**
   * One more user of the rates (the API, the metrics listener, the stats
   * log): the first starts the timer (a sample now, then every intervalMs).
   */
  start(intervalMs = 1000): void {
    this.users++;
    if (this.timer) return;
    this.intervalMs = intervalMs;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  /** One user fewer: the last stops the timer (readings are kept; they only age). */
  stop(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Run fn after every tick (other samplers on the same clock). */
  onSample(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** Read the next chunk of slots. */
  sample(): void {
    try {
      const end = this.source.slotEnd();
      const chunks = Math.ceil(end / this.chunkSlots);
      this.rings.length = chunks;
      if (chunks > 0) this.readChunk(this.tick++ % chunks, end, chunks);
    } catch (err) {
      // The data plane is closed while the agent stops; the next start samples again.
      this.log.debug({ err: String(err) }, 'counter sample skipped');
    }
    for (const fn of this.listeners) fn();
  }

  /**
   * The reading of slot to compare with one taken at nowMs: the newest at
   * least WINDOW_MS older, else the oldest held; undefined when none is held.
   */
  baseline(slot: number, nowMs: number): Baseline | undefined {
    const ring = this.rings[Math.floor(slot / this.chunkSlots)];
    if (!ring || ring.size === 0) return undefined;
    const cap = ring.ms.length;
    let pick = -1;
    // From the newest back: the first old enough wins; otherwise the oldest.
    for (let back = 1; back <= ring.size; back++) {
      const i = (ring.next - back + cap) % cap;
      pick = i;
      if (nowMs - ring.ms[i]! >= WINDOW_MS) break;
    }
    const at = (slot % this.chunkSlots) * RATE_FIELDS;
    const values = ring.values[pick]!;
    if (Number.isNaN(values[at])) return undefined;
    return { values, at, ms: ring.ms[pick]! };
  }

  private readChunk(chunk: number, end: number, chunks: number): void {
    // Enough readings that one is WINDOW_MS old however the ticks fall: each chunk is read every chunks ticks.
    const capacity = Math.ceil(WINDOW_MS / (chunks * this.intervalMs)) + 1;
    let ring = this.rings[chunk];
    if (!ring || ring.ms.length !== capacity) {
      ring = { ms: new Float64Array(capacity), values: Array.from({ length: capacity }, () => new Float64Array(this.chunkSlots * RATE_FIELDS)), next: 0, size: 0 };
      this.rings[chunk] = ring;
    }
    const from = chunk * this.chunkSlots;
    const values = ring.values[ring.next]!;
    const got = this.source.read(from, Math.min(this.chunkSlots, end - from), RATE_OFFSETS, values);
    // Slots past the end have no reading (a slot handed out later must not compare with stale numbers).
    values.fill(Number.NaN, got * RATE_FIELDS);
    ring.ms[ring.next] = performance.now();
    ring.next = (ring.next + 1) % capacity;
    ring.size = Math.min(ring.size + 1, capacity);
  }
}
