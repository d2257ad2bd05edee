/**
 * Section: fairness. Four TCP flows share one limited port (the server in B
 * sends four parallel streams, iperf3 -P 4): how evenly the limiter splits
 * the rate between them (Jain's index over the bytes each stream delivered)
 * and how much of the rate they get together, for portshaper shaping, HTB
 * and portshaper policing, in the same run.
 */
import type { BenchContext } from '../lib/context.js';
import { htbLimiter, portshaperLimiter, portshaperShapeLimiter, type Limiter } from '../lib/limiters.js';
import { BUSY_LIMITS } from '../lib/load.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { summarize, type Summary } from '../lib/stats.js';
import { jainIndex, tcpRun, TEST_PORT, type TcpOutcome } from '../lib/traffic.js';
import { SHAPE_BURST_NS } from './accuracy.js';

const RATE_BPS = 100e6;
const FLOWS = 4;
/** The policer's default depth (TCP through a shallower policer collapses). */
const POLICE_BURST_NS = 300_000_000;

/** One limiter's share-out between the flows. */
export interface FairnessRow {
  limiter: string;
  burstNs: number;
  /** Jain's index: 1 = equal shares, 1/FLOWS = one flow takes all. */
  jain: Summary;
  /** Aggregate goodput / configured. */
  aggregate: Summary;
  /** Smallest flow's share of an equal share (1 = fair). */
  worstShare: Summary;
  retransmits: Summary;
  rttMs: Summary;
}

export interface FairnessResult {
  rateBps: number;
  flows: number;
  seconds: number;
  rows: FairnessRow[];
  failures: Record<string, string[]>;
}

/** Measure the share-out of every limiter. */
export async function runFairness(ctx: BenchContext): Promise<FairnessResult> {
  const seconds = ctx.quick ? 3 : 6;
  const variants: { limiter: Limiter; burstNs: number }[] = [
    { limiter: portshaperShapeLimiter(ctx), burstNs: SHAPE_BURST_NS },
    { limiter: htbLimiter(ctx), burstNs: SHAPE_BURST_NS },
    { limiter: portshaperLimiter(ctx), burstNs: POLICE_BURST_NS },
  ];
  const id = (l: Limiter) => `fairness ${FLOWS} flows ${l.id}`;
  const cases: Case<TcpOutcome>[] = variants.map(({ limiter, burstNs }) => ({
    id: id(limiter),
    setup: () => limiter.setup({ protocol: 'tcp', port: TEST_PORT, rateBps: RATE_BPS, burstNs }),
    measure: () => tcpRun(ctx.topo, seconds, { parallel: FLOWS }),
    teardown: () => limiter.teardown(),
    busyLimit: BUSY_LIMITS.limiterBound,
  }));
  const r = await runInterleaved(cases, ctx.reps);
  return {
    rateBps: RATE_BPS,
    flows: FLOWS,
    seconds,
    rows: variants.map(({ limiter, burstNs }) => {
      const s = r.samples.get(id(limiter)) ?? [];
      // A run that did not report every stream says nothing about their shares.
      const complete = (o: TcpOutcome) => o.streamBytes.length === FLOWS;
      return {
        limiter: limiter.id,
        burstNs: limiter.fixedBurstNs ?? burstNs,
        jain: summarize(s, (o) => (complete(o) ? jainIndex(o.streamBytes) : undefined)),
        aggregate: summarize(s, (o) => o.goodputBps / RATE_BPS),
        worstShare: summarize(s, (o) => (complete(o) ? (Math.min(...o.streamBytes) * FLOWS) / o.streamBytes.reduce((a, b) => a + b, 0) : undefined)),
        retransmits: summarize(s, (o) => o.retransmits),
        rttMs: summarize(s, (o) => o.rttMs),
      };
    }),
    failures: Object.fromEntries(r.failures),
  };
}
