/** The 1 Hz sampler over a stand-in data plane: rates from the ring of samples, buffers reused. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/controller/agent.js';
import { RateSampler } from '../../src/controller/sampler.js';
import { psCounters, zeroCounters } from '../../src/kernel/layout.js';
import { roundUp8 } from '../../src/kernel/maps.js';

describe('RateSampler', () => {
  it('computes pass and drop rates over the window from per-CPU counters', async () => {
    const cpus = 2;
    const stride = roundUp8(psCounters.size) * cpus;
    let packets = 0n;
    const raw = Buffer.alloc(stride * 3);
    const agent = {
      state: { slots: new Map([['a/ingress', 2]]) },
      dataPlane: {
        cpus,
        maps: {
          ps_counters: {
            stride,
            readAll: (limit: number, into?: { keys: Buffer; values: Buffer }) => {
              const values = into?.values ?? Buffer.alloc(stride * limit);
              raw.copy(values, 0, 0, stride * limit);
              return { keys: new Uint32Array(limit), values, count: limit };
            },
          },
        },
      },
    };
    const sampler = new RateSampler(agent as unknown as Agent, pino({ level: 'silent' }));
    for (let i = 0; i < 8; i++) {
      packets += 100n;
      // Both CPUs count: 100 packets of 1,000 bytes passed and 10 dropped per sample, split across CPUs.
      for (let cpu = 0; cpu < cpus; cpu++) {
        psCounters.encode({ ...zeroCounters(), pass_pkts: packets / 2n, pass_bytes: (packets / 2n) * 1000n, drop_pkts: packets / 20n }, raw, 2 * stride + cpu * roundUp8(psCounters.size));
      }
      sampler.sample();
      // Long enough that the window's rounding to the millisecond stays under 0.5%.
      await new Promise((r) => setTimeout(r, 60));
    }
    const rate = sampler.observed([2]);
    // Six samples kept: five intervals of 100 packets.
    const perSecond = 500 / rate.windowSeconds;
    expect(rate.windowSeconds).toBeGreaterThan(0.25);
    // The window is reported rounded to the millisecond.
    expect(rate.packetsPerSecond / perSecond).toBeCloseTo(1, 2);
    expect(rate.bitsPerSecond / (perSecond * 8000)).toBeCloseTo(1, 2);
    expect(rate.droppedPacketsPerSecond / (perSecond / 10)).toBeCloseTo(1, 2);
  });
});
