/**
 * Section 2: overhead when not limiting. TCP throughput and the small-packet
 * UDP rate of traffic no limit slows down, on three devices: no program and
 * no qdisc; portshaper attached on every hook of both ends with an unlimited
 * (count-only) rule on the test port; and the same plus a shaped rule on
 * another port of the sender, which puts our HTB root on the device, so the
 * measured traffic goes through HTB's direct queue. Interleaved in every
 * repetition and compared pairwise with no program.
 */
import { inNetns } from '../../src/kernel/netns.js';
import type { BenchContext } from '../lib/context.js';
import { attachAt, clearRules, detachFrom, ends, removeClsact, setRules } from '../lib/context.js';
import { ControlledDevice, planRules } from '../lib/controlled.js';
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
  /** portshaper with a shaped rule on another port (HTB root on the sender). */
  shapedDevice: Summary;
  /** shapedDevice / none, paired by repetition. */
  shapedRatio: Summary;
}

export interface OverheadResult {
  seconds: number;
  /** The shaped rule of the shaped-device case, as a policy line. */
  shapedRule: string;
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
  // The shaped-device case: the same rules through the controller, plus a
  // shaped rule on a port the traffic does not use (HTB root and one class on
  // the sender). Both ends have ifindex 2 in their namespaces, so they share
  // one ps_ifaces entry: the receiver's hooks are removed first, and the
  // sender's release unregisters the entry.
  const shapedRule = `{ name: other, port: ${TEST_PORT + 1}, protocol: tcp, direction: egress, rate: 100mbit, mode: shape }`;
  const device = new ControlledDevice(ctx.dp, sender);
  const shaped = {
    async setup() {
      device.enforce(
        planRules(
          sender.ifname,
          [`{ name: local, port: ${TEST_PORT}, protocol: any, direction: both, rate: unlimited }`, `{ name: remote, port: ${TEST_PORT}, protocol: any, direction: both, side: remote, rate: unlimited }`, shapedRule],
          { ingress: true, egress: true },
        ),
      );
      attachAt(ctx.dp, receiver, { ingress: true, egress: true });
    },
    async teardown() {
      inNetns(receiver.ns, () => ctx.dp.detach(receiver.ifindex, receiver.ifname));
      device.release();
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
    { id: `overhead ${t.name} / portshaper, shaped device`, ...shaped, measure: t.measure },
  ]);
  const r = await runInterleaved(cases, ctx.reps);
  return {
    seconds,
    shapedRule,
    rows: traffic.map((t) => {
      const none = r.samples.get(`overhead ${t.name} / no program`) ?? [];
      const ps = r.samples.get(`overhead ${t.name} / portshaper`) ?? [];
      const sd = r.samples.get(`overhead ${t.name} / portshaper, shaped device`) ?? [];
      return {
        traffic: t.name,
        unit: t.unit,
        none: summarize(none, (v) => v.value),
        portshaper: summarize(ps, (v) => v.value),
        ratio: pairedRatio(ps, none, (v) => v.value),
        shapedDevice: summarize(sd, (v) => v.value),
        shapedRatio: pairedRatio(sd, none, (v) => v.value),
      };
    }),
    failures: Object.fromEntries(r.failures),
  };
}
