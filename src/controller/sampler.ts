/**
 * The 1 Hz counter sampler behind the observed rates: every interval it
 * batch-reads ps_counters over [0, highest slot in use] into buffers kept
 * across samples and sums the four fields rates need per CPU as numbers
 * (no BigInt, no object per slot); the last RING samples give each rate as
 * the difference across the window (5 s).
 */
import type { Logger } from 'pino';
import { counterOffset, sumCounterFields } from '../kernel/counters.js';
import type { Agent } from './agent.js';

/** Samples kept for observed rates: one a second, so rates cover the last 5 s. */
const RING = 6;
/** Fields sampled per slot, in this order. */
const SAMPLED = (['pass_bytes', 'pass_pkts', 'drop_bytes', 'drop_pkts'] as const).map(counterOffset);
const FIELDS = SAMPLED.length;

/** One counter sample: the time and, per slot, FIELDS numbers. */
interface Sample {
  ms: number;
  values: Float64Array;
}

/** Rates of some slots over the sample window. */
export interface ObservedRate {
  bitsPerSecond: number;
  packetsPerSecond: number;
  droppedBitsPerSecond: number;
  droppedPacketsPerSecond: number;
  windowSeconds: number;
}

/** Samples the counters of the agent's slots at a fixed interval. */
export class RateSampler {
  private samples: Sample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private also: (() => void) | undefined;
  /** Batch-read buffers and the slot list [0, n), kept across samples. */
  private buffers: { keys: Buffer; values: Buffer; every: Uint32Array } | undefined;

  constructor(
    private readonly agent: Agent,
    private readonly log: Logger,
  ) {}

  /** Sample now, then every intervalMs; `also` runs after each sample (other samplers on the same clock). */
  start(intervalMs = 1000, also?: () => void): void {
    // The API and the metrics listener share one service: one sampler.
    if (this.timer) return;
    this.also = also;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Sums of pass bytes, pass packets, drop bytes, drop packets (in that
   * order) of the given slots in the latest sample; sampled now when the
   * timer is not running.
   */
  latest(slots: Iterable<number>): [number, number, number, number] {
    if (!this.timer || !this.samples.length) this.sample();
    const values = this.samples[this.samples.length - 1]?.values;
    const sum: [number, number, number, number] = [0, 0, 0, 0];
    if (!values) return sum;
    for (const slot of slots) for (let f = 0; f < FIELDS; f++) sum[f as 0 | 1 | 2 | 3] += values[slot * FIELDS + f] ?? 0;
    return sum;
  }

  /** Rates over the sample window for the given slots; a slot whose counters went down (re-used) counts 0. */
  observed(slots: number[]): ObservedRate {
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

  sample(): void {
    try {
      const dp = this.agent.dataPlane;
      // Slots are handed out lowest first, so [0, highest slot] is about the slots in use.
      let size = 0;
      for (const slot of this.agent.state.slots.values()) if (slot >= size) size = slot + 1;
      const stride = dp.maps.ps_counters.stride;
      if (!this.buffers || this.buffers.every.length < size) {
        const room = Math.max(size, 64);
        this.buffers = { keys: Buffer.alloc(4 * room), values: Buffer.alloc(stride * room), every: Uint32Array.from({ length: room }, (_, i) => i) };
      }
      const { values, count } = dp.maps.ps_counters.readAll(size, this.buffers);
      // Reuse the oldest sample's array once the ring is full: a sample allocates nothing in steady state.
      const reused = this.samples.length >= RING ? this.samples.shift()!.values : undefined;
      const sums = reused && reused.length === count * FIELDS ? reused : new Float64Array(count * FIELDS);
      sumCounterFields(values, stride, dp.cpus, this.buffers.every.subarray(0, count), SAMPLED, sums);
      this.samples.push({ ms: performance.now(), values: sums });
      this.also?.();
    } catch (err) {
      // The data plane is closed while the agent stops; the next start samples again.
      this.log.debug({ err: String(err) }, 'counter sample skipped');
    }
  }
}
