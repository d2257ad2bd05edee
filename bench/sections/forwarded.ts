/**
 * Section: forwarded traffic (the edge-gateway case). A sender in A, a router
 * R, a receiver in B; the limit sits on R's egress towards B, on the
 * server's (remote) port. Forwarded packets have no TCP small-queue limit
 * behind them, so the queue at the limiter grows until something stops it:
 * portshaper's horizon (drop) or its ECN marks, or HTB's leaf queue filling.
 * Reno in A fills a queue until it loses (CUBIC's HyStart leaves slow start
 * early on delay), so the queue really builds. Reported: TCP's own RTT at the
 * sender, goodput, retransmits, and portshaper's CE marks and drops; with and
 * without ECN negotiated by the two ends (net.ipv4.tcp_ecn=1 in A and B).
 */
import { createRoutedTopology, nsExec, type RoutedTopology } from '../../test/helpers/net.js';
import { runIperf } from '../../test/helpers/traffic.js';
import { onCleanup } from '../lib/cleanup.js';
import type { BenchContext } from '../lib/context.js';
import { ControlledDevice, planRules } from '../lib/controlled.js';
import { htbOn, shapeRule, type LimitSpec } from '../lib/limiters.js';
import { BUSY_LIMITS } from '../lib/load.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { summarize, type Summary } from '../lib/stats.js';
import { tcpOutcome, type TcpOutcome } from '../lib/traffic.js';
import { SHAPE_BURST_NS } from './accuracy.js';

const PORT = 5401;
const RATE_BPS = 100e6;
const BUCKET = 'fwd/egress';

/** One forwarded run: TCP at the sender, and what portshaper's bucket did. */
interface ForwardedRun {
  tcp: TcpOutcome;
  marks?: number;
  drops?: number;
}

/** One (limiter, ECN) configuration. */
export interface ForwardedRow {
  limiter: string;
  ecn: boolean;
  goodput: Summary;
  rttMs: Summary;
  maxRttMs: Summary;
  retransmits: Summary;
  /** portshaper only: packets marked CE, and dropped (past the horizon). */
  marks?: Summary;
  drops?: Summary;
}

export interface ForwardedResult {
  rateBps: number;
  seconds: number;
  /** portshaper's rule, as a policy line. */
  rule: string;
  rows: ForwardedRow[];
  failures: Record<string, string[]>;
}

/** Measure the forwarded flow's RTT under portshaper and HTB, with and without ECN. */
export async function runForwarded(ctx: BenchContext): Promise<ForwardedResult> {
  const seconds = ctx.quick ? 3 : 6;
  const topo = await createRoutedTopology('benchfwd');
  const undo = onCleanup('delete the forwarding namespaces', () => void topo.destroy());
  try {
    await nsExec(topo.nsA, ['sysctl', '-q', '-w', 'net.ipv4.tcp_congestion_control=reno']);
    return await measure(ctx, topo, seconds);
  } finally {
    undo();
  }
}

async function measure(ctx: BenchContext, topo: RoutedTopology, seconds: number): Promise<ForwardedResult> {
  const router = { ns: topo.nsR, ifname: topo.ifRB };
  const spec: LimitSpec = { protocol: 'tcp', port: PORT, rateBps: RATE_BPS, burstNs: SHAPE_BURST_NS };
  // R forwards A's packets to B: the server's port is the destination, the remote side for R.
  const rule = shapeRule('fwd', spec, ', side: remote');
  const shaper = new ControlledDevice(ctx.dp, router);
  const htb = htbOn(router, 'dport');
  const ends = [topo.nsA, topo.nsB];
  const ecnBefore = await Promise.all(ends.map(async (ns) => (await nsExec(ns, ['sysctl', '-n', 'net.ipv4.tcp_ecn'])).stdout.trim()));
  const setEcn = async (on: boolean) => {
    for (const [i, ns] of ends.entries()) await nsExec(ns, ['sysctl', '-q', '-w', `net.ipv4.tcp_ecn=${on ? '1' : ecnBefore[i]}`]);
  };
  const send = async () => tcpOutcome(await runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: PORT, seconds, intervalSeconds: 1 }));

  const id = (limiter: string, ecn: boolean) => `forwarded ${limiter} ${ecn ? 'ECN' : 'no ECN'}`;
  const cases: Case<ForwardedRun>[] = [];
  for (const ecn of [false, true]) {
    cases.push({
      id: id('portshaper shape', ecn),
      setup: async () => {
        await setEcn(ecn);
        shaper.enforce(planRules(router.ifname, [rule]));
      },
      measure: async () => {
        const tcp = await send();
        const c = shaper.counters(BUCKET);
        return { tcp, marks: Number(c.mark_pkts), drops: Number(c.drop_pkts) };
      },
      teardown: async () => {
        shaper.release();
        await setEcn(false);
      },
      busyLimit: BUSY_LIMITS.limiterBound,
    });
    cases.push({
      id: id('htb', ecn),
      setup: async () => {
        await setEcn(ecn);
        await htb.setup(spec);
      },
      measure: async () => ({ tcp: await send() }),
      teardown: async () => {
        await htb.teardown();
        await setEcn(false);
      },
      busyLimit: BUSY_LIMITS.limiterBound,
    });
  }
  const r = await runInterleaved(cases, ctx.reps);
  const rows: ForwardedRow[] = [];
  for (const limiter of ['portshaper shape', 'htb']) {
    for (const ecn of [false, true]) {
      const s = r.samples.get(id(limiter, ecn)) ?? [];
      const row: ForwardedRow = {
        limiter,
        ecn,
        goodput: summarize(s, (v) => v.tcp.goodputBps / RATE_BPS),
        rttMs: summarize(s, (v) => v.tcp.rttMs),
        maxRttMs: summarize(s, (v) => v.tcp.maxRttMs),
        retransmits: summarize(s, (v) => v.tcp.retransmits),
      };
      if (limiter !== 'htb') {
        row.marks = summarize(s, (v) => v.marks);
        row.drops = summarize(s, (v) => v.drops);
      }
      rows.push(row);
    }
  }
  return { rateBps: RATE_BPS, seconds, rule, rows, failures: Object.fromEntries(r.failures) };
}
