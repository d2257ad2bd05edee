/**
 * Section 1: accuracy. One port limited at 10, 100 and 1000 Mbit/s by each
 * limiter (portshaper shaping and policing, nftables, HTB, TBF); TCP goodput
 * (whole run, first second at the receiver, steady state, retransmits, TCP's
 * own RTT at the sender) and UDP offered at twice the rate (delivered wire
 * rate, loss).
 */
import { allLimiters, portshaperLimiter, type Limiter } from '../lib/limiters.js';
import { BUSY_LIMITS } from '../lib/load.js';
import type { BenchContext } from '../lib/context.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { summarize, type Sample, type Summary } from '../lib/stats.js';
import { tcpRun, TEST_PORT, UDP_LEN, udpRun, type TcpOutcome, type UdpOutcome } from '../lib/traffic.js';
import { udpWireBytes } from '../../test/helpers/traffic.js';

const MBIT = 1e6;
/** Policers need a bucket deeper than TCP's minimum RTO (200 ms): the project default. */
const TCP_BURST_NS = 300_000_000;
/** The shallow bucket that shows TCP collapsing under a policer. */
const SHALLOW_BURST_NS = 10_000_000;
/** Shaping: how far ahead of the rate a flow may start (the policy's default for mode: shape). */
export const SHAPE_BURST_NS = 10_000_000;
/** UDP: a shallow bucket, so the start credit adds little to a short run. */
const UDP_BURST_NS = 10_000_000;
/** TCP payload per wire byte of a full-size segment with timestamps: 1448 / 1514. */
export const TCP_WIRE_IDEAL = 1448 / 1514;

/** One limiter configuration of the section. */
interface Variant {
  limiter: Limiter;
  label: string;
  burstNs: number;
}

/** TCP numbers of one (limiter, rate), as ratios of goodput to the configured rate. */
export interface TcpRow {
  limiter: string;
  rateBps: number;
  burstNs: number;
  whole: Summary;
  firstSecond: Summary;
  steady: Summary;
  retransmits: Summary;
  /** TCP's smoothed RTT at the sender, mean over the run (ms). */
  rttMs: Summary;
  /** The receiver's rate per second in the first quiet run (bits/s). */
  perSecondBps: number[];
}

/** UDP at twice the rate: delivered wire rate / configured, and loss. */
export interface UdpRow {
  limiter: string;
  rateBps: number;
  burstNs: number;
  delivered: Summary;
  offered: Summary;
  loss: Summary;
  /** delivered / configured of a limiter exact in what it counts. */
  ideal: number;
}

export interface AccuracyResult {
  rates: number[];
  tcpSeconds: number;
  udpSeconds: number;
  limiters: { id: string; description: string; counts: string }[];
  tcp: TcpRow[];
  udp: UdpRow[];
  failures: Record<string, string[]>;
}

/** Measure every limiter at every rate. */
export async function runAccuracy(ctx: BenchContext): Promise<AccuracyResult> {
  const rates = ctx.quick ? [100 * MBIT] : [10 * MBIT, 100 * MBIT, 1000 * MBIT];
  const tcpSeconds = ctx.quick ? 3 : 6;
  const udpSeconds = ctx.quick ? 2 : 3;
  const limiters = allLimiters(ctx);

  const tcpVariants: { rateBps: number; v: Variant }[] = [];
  for (const rateBps of rates) {
    for (const limiter of limiters) tcpVariants.push({ rateBps, v: { limiter, label: limiter.id, burstNs: tcpBurstOf(limiter) } });
  }
  tcpVariants.push({ rateBps: 100 * MBIT, v: { limiter: portshaperLimiter(ctx), label: 'portshaper police (10 ms burst)', burstNs: SHALLOW_BURST_NS } });
  const udpVariants = rates.flatMap((rateBps) => limiters.map((limiter) => ({ rateBps, v: { limiter, label: limiter.id, burstNs: UDP_BURST_NS } })));

  const id = (proto: string, label: string, rateBps: number) => `accuracy ${proto} ${label} @ ${rateBps / MBIT} Mbit/s`;
  // Up to 100 Mbit/s the limiter, not the CPU, sets the rate; at 1 Gbit/s the CPU may.
  const busyLimit = (rateBps: number) => (rateBps <= 100 * MBIT ? BUSY_LIMITS.limiterBound : BUSY_LIMITS.cpuBound);
  const tcpCases: Case<TcpOutcome>[] = tcpVariants.map(({ rateBps, v }) => ({
    id: id('tcp', v.label, rateBps),
    setup: () => v.limiter.setup({ protocol: 'tcp', port: TEST_PORT, rateBps, burstNs: v.burstNs }),
    measure: () => tcpRun(ctx.topo, tcpSeconds),
    teardown: () => v.limiter.teardown(),
    busyLimit: busyLimit(rateBps),
  }));
  const udpCases: Case<UdpOutcome>[] = udpVariants.map(({ rateBps, v }) => ({
    id: id('udp', v.label, rateBps),
    setup: () => v.limiter.setup({ protocol: 'udp', port: TEST_PORT, rateBps, burstNs: v.burstNs }),
    measure: () => udpRun(ctx.topo, udpSeconds, 2 * rateBps, UDP_LEN),
    teardown: () => v.limiter.teardown(),
    busyLimit: busyLimit(rateBps),
  }));

  const tcp = await runInterleaved(tcpCases, ctx.reps);
  const udp = await runInterleaved(udpCases, ctx.reps);

  const wire = udpWireBytes(UDP_LEN);
  return {
    rates,
    tcpSeconds,
    udpSeconds,
    limiters: limiters.map((l) => ({ id: l.id, description: l.description, counts: l.counts })),
    tcp: tcpVariants.map(({ rateBps, v }) => {
      const s = tcp.samples.get(id('tcp', v.label, rateBps)) ?? [];
      const ratio = (pick: (o: TcpOutcome) => number) => summarize(s, (o) => pick(o) / rateBps);
      return {
        limiter: v.label,
        rateBps,
        burstNs: v.limiter.fixedBurstNs ?? v.burstNs,
        whole: ratio((o) => o.goodputBps),
        firstSecond: ratio((o) => o.firstSecondBps),
        steady: ratio((o) => o.steadyBps),
        retransmits: summarize(s, (o) => o.retransmits),
        rttMs: summarize(s, (o) => o.rttMs),
        perSecondBps: firstQuiet(s)?.perSecondBps ?? [],
      };
    }),
    udp: udpVariants.map(({ rateBps, v }) => {
      const s = udp.samples.get(id('udp', v.label, rateBps)) ?? [];
      return {
        limiter: v.label,
        rateBps,
        burstNs: v.limiter.fixedBurstNs ?? v.burstNs,
        delivered: summarize(s, (o) => o.deliveredWireBps / rateBps),
        offered: summarize(s, (o) => o.offeredWireBps / rateBps),
        loss: summarize(s, (o) => o.loss),
        ideal: wire / v.limiter.chargedUdpBytes(wire),
      };
    }),
    failures: Object.fromEntries([...tcp.failures, ...udp.failures]),
  };
}

/** Policers get the 300 ms TCP needs; portshaper's shaper the shaping default (HTB and TBF use their own 10 ms). */
function tcpBurstOf(limiter: Limiter): number {
  return limiter.id === 'portshaper shape' ? SHAPE_BURST_NS : TCP_BURST_NS;
}

function firstQuiet<T>(samples: readonly Sample<T>[]): T | undefined {
  return (samples.find((s) => !s.load.busy) ?? samples[0])?.value;
}
