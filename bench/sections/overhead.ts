/**
 * Section 2: overhead when not limiting. TCP throughput and the small-packet
 * UDP rate with portshaper attached on every hook of both ends and an
 * unlimited rule on the test port, against the same with no program; the two
 * interleaved in every repetition and compared pairwise.
 */
import type { BenchContext } from '../lib/context.js';
import { attachAt, clearRules, detachFrom, ends, removeClsact, setRules } from '../lib/context.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { pairedRatio, summarize, type Summary } from '../lib/stats.js';
import { SMALL_LEN, tcpRun, TEST_PORT, udpRun } from '../lib/traffic.js';
import { desiredFrom } from '../../test/helpers/dataplane.js';

/** Throughput of one traffic type with and without the program, and their ratio. */
export interface OverheadRow {
  traffic: string;
  unit: string;
  none: Summary;
  portshaper: Summary;
  /** portshaper / none, paired by repetition. */
  ratio: Summary;
}

export interface OverheadResult {
  seconds: number;
  rows: OverheadRow[];
  failures: Record<string, string[]>;
}

type Throughput = { value: number };

/** Measure TCP and small-packet UDP with and without portshaper. */
export async function runOverhead(ctx: BenchContext): Promise<OverheadResult> {
  const seconds = ctx.quick ? 2 : 3;
  const { sender, receiver } = ends(ctx.topo);
  // Unlimited (rate 0: counted, never dropped) on both sides of the port, both protocols and directions.
  const rules = desiredFrom([
    { name: 'local', port: TEST_PORT, rateBps: 0, burstNs: 0 },
    { name: 'remote', port: TEST_PORT, side: 'remote', rateBps: 0, burstNs: 0 },
  ]);
  const attached = {
    async setup() {
      setRules(ctx.dp, rules);
      attachAt(ctx.dp, sender, { ingress: true, egress: true });
      attachAt(ctx.dp, receiver, { ingress: true, egress: true });
    },
    async teardown() {
      detachFrom(ctx.dp, sender);
      detachFrom(ctx.dp, receiver);
      clearRules(ctx.dp);
    },
  };
  const traffic = [
    { name: 'TCP, one stream', unit: 'Gbit/s', measure: async () => ({ value: (await tcpRun(ctx.topo, seconds)).goodputBps / 1e9 }) },
    {
      name: `UDP, ${SMALL_LEN}-byte payload, as fast as iperf3 sends`,
      unit: 'kpps received',
      measure: async () => ({ value: (await udpRun(ctx.topo, seconds, 0, SMALL_LEN)).receivedPps / 1e3 }),
    },
  ];
  const cases: Case<Throughput>[] = traffic.flatMap((t) => [
    {
      id: `overhead ${t.name} / no program`,
      setup: async () => {
        await removeClsact(sender);
        await removeClsact(receiver);
      },
      measure: t.measure,
    },
    { id: `overhead ${t.name} / portshaper`, ...attached, measure: t.measure },
  ]);
  const r = await runInterleaved(cases, ctx.reps);
  return {
    seconds,
    rows: traffic.map((t) => {
      const none = r.samples.get(`overhead ${t.name} / no program`) ?? [];
      const ps = r.samples.get(`overhead ${t.name} / portshaper`) ?? [];
      return {
        traffic: t.name,
        unit: t.unit,
        none: summarize(none, (v) => v.value),
        portshaper: summarize(ps, (v) => v.value),
        ratio: pairedRatio(ps, none, (v) => v.value),
      };
    }),
    failures: Object.fromEntries(r.failures),
  };
}
