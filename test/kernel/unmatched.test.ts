/**
 * Per-port accounting of unmatched traffic (ps_unmatched) on crafted frames:
 * nothing is counted unless the interface's PS_IFACE_COUNT_UNMATCHED bit is
 * set; when it is, each packet no rule matches is counted once, at its local
 * port (ingress: destination, egress: source), and matched packets are not.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { unmatchedIndex, PS } from '../../src/kernel/layout.js';
import { decodeUnmatchedIndex, readUnmatched } from '../../src/kernel/unmatched.js';
import { describeKernel } from '../helpers/env.js';
import { openTestDataPlane, desiredFrom } from '../helpers/dataplane.js';
import { buildFrame, skbContext } from '../helpers/frames.js';

const LO = 1;
const ctx = skbContext({ ifindex: LO });
const noRemote = { ingress: false, egress: false };

describeKernel('per-port accounting of unmatched traffic (BPF_PROG_TEST_RUN)', () => {
  let t: ReturnType<typeof openTestDataPlane>;

  beforeAll(() => {
    t = openTestDataPlane('unmatched');
    applyDesired(t.dp, desiredFrom([{ name: 'web', port: 8080, protocol: 'tcp', direction: 'both', rateBps: 0, burstNs: 0 }]));
  });
  afterAll(() => t?.dispose());

  it('decodes its own index formula', () => {
    expect(decodeUnmatchedIndex(unmatchedIndex(PS.PS_DIR_EGRESS, PS.PS_PROTO_UDP, 5353))).toEqual({ direction: 'egress', protocol: 'udp', port: 5353 });
    expect(decodeUnmatchedIndex(unmatchedIndex(PS.PS_DIR_INGRESS, PS.PS_PROTO_TCP, 1))).toEqual({ direction: 'ingress', protocol: 'tcp', port: 1 });
  });

  it('counts nothing while the interface has accounting off', () => {
    t.dp.setInterface(LO, 0, noRemote, false);
    t.dp.testRun('ingress', buildFrame({ ip: 4, l4: 'udp', sport: 40000, dport: 9000 }), ctx, 5);
    expect(readUnmatched(t.dp), 'ps_unmatched after 5 unmatched packets with accounting off').toEqual([]);
  });

  it('counts unmatched packets once, at the local port of each direction, and never matched ones', () => {
    t.dp.setInterface(LO, 0, noRemote, true);
    const udpIn = buildFrame({ ip: 4, l4: 'udp', sport: 40000, dport: 9000, payload: 100 });
    const tcpOut = buildFrame({ ip: 6, l4: 'tcp', sport: 9001, dport: 40001, payload: 10 });
    const matched = buildFrame({ ip: 4, l4: 'tcp', sport: 40002, dport: 8080 });
    t.dp.testRun('ingress', udpIn, ctx, 3);
    t.dp.testRun('egress', tcpOut, ctx, 2);
    t.dp.testRun('ingress', matched, ctx, 4);
    const rows = readUnmatched(t.dp);
    expect(rows, 'ps_unmatched rows with accounting on').toEqual([
      { direction: 'ingress', protocol: 'udp', port: 9000, packets: 3, bytes: 3 * udpIn.length },
      { direction: 'egress', protocol: 'tcp', port: 9001, packets: 2, bytes: 2 * tcpOut.length },
    ]);
  });

  it('measures what the accounting adds per unmatched packet (BPF_PROG_TEST_RUN duration, on vs off)', () => {
    const frame = buildFrame({ ip: 4, l4: 'udp', sport: 40000, dport: 9100, payload: 1000 });
    const runs: Record<'on' | 'off', number[]> = { on: [], off: [] };
    // Alternate, so that a busy neighbour on the shared CPUs weighs on both alike; the kernel times the repeats itself.
    for (let round = 0; round < 5; round++) {
      for (const mode of ['off', 'on'] as const) {
        t.dp.setInterface(LO, 0, noRemote, mode === 'on');
        runs[mode].push(t.dp.testRun('ingress', frame, ctx, 200_000).durationNs);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.log(`unmatched packet, ns per run (median of 5 x 200k): off ${median(runs.off)}, on ${median(runs.on)}, accounting adds ${median(runs.on) - median(runs.off)} ns`);
    expect(readUnmatched(t.dp).find((r) => r.port === 9100)?.packets, 'the on runs were counted').toBe(5 * 200_000);
  });
});
