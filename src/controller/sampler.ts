/**
 * The 1 Hz counter sampler behind the observed rates: every interval it
 * reads the counters of every slot in use and keeps the last RING samples,
 * so a rate is the difference across the window.
 */
import type { Logger } from 'pino';
import { readCounters } from '../kernel/counters.js';
import type { Agent } from './agent.js';

/** Samples kept for observed rates: one a second, so rates cover the last 5 s. */
const RING = 6;
const FIELDS = 4; // pass bytes, pass packets, drop bytes, drop packets

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

  constructor(
    private readonly agent: Agent,
    private readonly log: Logger,
  ) {}

  /** Sample now, then every intervalMs. */
  start(intervalMs = 1000): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
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
