/** Summing per-CPU counters straight from the batch buffer, without BigInt. */
import { describe, expect, it } from 'vitest';
import { counterOffset, sumCounters, sumCounterFields } from '../../../src/kernel/counters.js';
import { psCounters, zeroCounters } from '../../../src/kernel/layout.js';
import { roundUp8 } from '../../../src/kernel/maps.js';

describe('sumCounterFields', () => {
  it('sums the chosen fields over CPUs like sumCounters, u64 values past 2^32 included', () => {
    const cpus = 3;
    const step = roundUp8(psCounters.size);
    const stride = step * cpus;
    const raw = Buffer.alloc(stride * 4);
    for (let slot = 0; slot < 4; slot++) {
      for (let cpu = 0; cpu < cpus; cpu++) {
        const c = { ...zeroCounters(), pass_bytes: 5_000_000_000n * BigInt(slot + 1) + BigInt(cpu), pass_pkts: BigInt(cpu + slot), drop_pkts: 7n };
        psCounters.encode(c, raw, slot * stride + cpu * step);
      }
    }
    const offsets = (['pass_bytes', 'pass_pkts', 'drop_pkts'] as const).map(counterOffset);
    const out = new Float64Array(2 * offsets.length);
    sumCounterFields(raw, stride, cpus, [3, 1], offsets, out);
    const expected = [3, 1].flatMap((slot) => {
      const c = sumCounters(raw, slot * stride, cpus);
      return [Number(c.pass_bytes), Number(c.pass_pkts), Number(c.drop_pkts)];
    });
    expect([...out]).toEqual(expected);
    expect(out[0]).toBe(3 * (4 * 5_000_000_000) + 0 + 1 + 2);
  });
});
