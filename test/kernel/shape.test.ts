/**
 * Shaping on the real kernel: the policy pipeline and the controller install
 * an HTB root and a class per shaped rule, the program puts each packet of a
 * shaped port in its class (skb->priority), and HTB releases it at the rate.
 * Real TCP and UDP through a veth pair between two namespaces, and through a
 * router namespace for forwarded traffic (no TCP small queues behind it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PortshaperError } from '../../src/errors.js';
import { describeKernel } from '../helpers/env.js';
import { PolicyHarness as Shaper, testPinDir } from '../helpers/dataplane.js';
import { createRoutedTopology, createTopology, htbClasses as classes, nsExec, qdiscs, run, type RoutedTopology, type Topology } from '../helpers/net.js';
import { runIperf, tcpGoodputBitsPerSecond, udpWireBitsPerSecond, udpWireBytes, type IperfResult } from '../helpers/traffic.js';

const MBIT = 1_000_000;

/** Jain's fairness index of per-flow throughputs: 1 = equal shares, 1/n = one flow takes all. */
function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return (sum * sum) / (xs.length * squares);
}

/** Bytes each parallel stream delivered (receiver side). */
function streamBytes(r: IperfResult): number[] {
  const streams = (r.raw.end as { streams?: Array<{ receiver?: { bytes: number } }> }).streams ?? [];
  return streams.map((s) => s.receiver?.bytes ?? 0);
}

/** TCP's own mean and max smoothed RTT of the sender, in ms (iperf3 reports µs). */
function senderRtt(r: IperfResult): { mean: number; max: number } {
  const streams = (r.raw.end as { streams?: Array<{ sender?: { mean_rtt?: number; max_rtt?: number } }> }).streams ?? [];
  const s = streams[0]?.sender ?? {};
  return { mean: (s.mean_rtt ?? 0) / 1000, max: (s.max_rtt ?? 0) / 1000 };
}

describeKernel(
  'shaping: per-port HTB classes chosen by the eBPF classifier',
  () => {
    let topo: Topology;
    let shaper: Shaper;
    // The server in B sends (iperf3 -R): its egress on ifB is what the rules shape.
    const tcp = (port: number, seconds = 4, parallel?: number) =>
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port, reverse: true, seconds, ...(parallel ? { parallel } : {}) });

    beforeAll(async () => {
      topo = await createTopology('shape');
      shaper = new Shaper(topo.nsB, topo.ifB, testPinDir('shape'));
    });
    afterAll(async () => {
      shaper?.close();
      await topo?.destroy();
    });

    describe('the qdisc', () => {
      it('installs an HTB root 5053: with no default class and one class per shaped rule', async () => {
        shaper.apply(['{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 100mbit }']);
        const [root] = (await qdiscs(topo.nsB, topo.ifB)).filter((q) => q.root);
        expect(root, 'root qdisc on the shaped device').toMatchObject({ kind: 'htb', handle: '5053:' });
        expect((root!.options as Record<string, unknown>).default, 'no default class: unclassified traffic is not shaped').toBe('0');
        expect(await classes(topo.nsB, topo.ifB)).toEqual([['5053:1', '100Mbit']]);
        const leaf = (await qdiscs(topo.nsB, topo.ifB)).find((q) => q.parent === '5053:1');
        expect(leaf?.kind, 'a bounded FIFO under the class').toBe('bfifo');
      });

      it('keeps the class and its queue when the rate changes', async () => {
        await tcp(5301, 1);
        const leafBefore = (await qdiscs(topo.nsB, topo.ifB)).find((q) => q.parent === '5053:1')!;
        shaper.apply(['{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 50mbit }']);
        expect(await classes(topo.nsB, topo.ifB)).toEqual([['5053:1', '50Mbit']]);
        const leafAfter = (await qdiscs(topo.nsB, topo.ifB)).find((q) => q.parent === '5053:1')!;
        expect(leafAfter.handle, 'same leaf queue').toBe(leafBefore.handle);
        expect(leafAfter.bytes as number, 'its counters carry on').toBeGreaterThanOrEqual(leafBefore.bytes as number);
        expect(leafBefore.bytes as number, 'the class carried the shaped flow').toBeGreaterThan(1_000_000);
      });

      it('restores the default root when nothing is shaped any more', async () => {
        shaper.apply(['{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 50mbit, mode: police }']);
        const [root] = (await qdiscs(topo.nsB, topo.ifB)).filter((q) => q.root);
        expect(root?.kind, 'veth default root').toBe('noqueue');
      });

      it('refuses to replace a root qdisc another tool configured, changing nothing, unless qdisc: replace', async () => {
        await run('tc', ['-n', topo.nsB, 'qdisc', 'add', 'dev', topo.ifB, 'root', 'handle', '1:', 'tbf', 'rate', '1gbit', 'burst', '100k', 'latency', '50ms']);
        const before = new Map(shaper.slots);
        let refused: unknown;
        try {
          shaper.apply(['{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 50mbit }', '{ name: new, port: 5399, rate: 1mbit }']);
        } catch (err) {
          refused = err;
        }
        expect(refused, 'apply refused').toBeInstanceOf(PortshaperError);
        expect((refused as PortshaperError).code).toBe('PS_QDISC_FOREIGN');
        expect((refused as Error).message).toMatch(new RegExp(`${topo.ifB}.*tbf`));
        expect((refused as Error).message, 'names the key that allows it').toMatch(/qdisc: replace/);
        expect(shaper.slots, 'no rule was written').toEqual(before);
        const [root] = (await qdiscs(topo.nsB, topo.ifB)).filter((q) => q.root);
        expect(root, 'the foreign root is untouched').toMatchObject({ kind: 'tbf', handle: '1:' });

        shaper.apply(['{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 100mbit }'], ', ingress: false, qdisc: replace');
        const [ours] = (await qdiscs(topo.nsB, topo.ifB)).filter((q) => q.root);
        expect(ours, 'replaced by ours').toMatchObject({ kind: 'htb', handle: '5053:' });
      });
    });

    describe('traffic', () => {
      it.each([10, 100, 1000])('TCP at %i Mbit/s: goodput ≈ the wire ideal, first second ≤ 1.02, few retransmits', async (mbit) => {
        const rate = mbit * MBIT;
        shaper.apply([`{ name: web, port: 5301, protocol: tcp, direction: egress, rate: ${mbit}mbit }`], ', ingress: false, qdisc: replace');
        const r = await tcp(5301);
        const ratio = tcpGoodputBitsPerSecond(r) / rate;
        const first = r.intervals[0]!;
        const firstRatio = (first.bytes * 8) / (first.end - first.start) / rate;
        const c = shaper.counters('web/egress');
        console.info(
          `shape tcp ${mbit} Mbit/s: goodput/configured ${ratio.toFixed(4)}, first second ${firstRatio.toFixed(4)}, ` +
            `retransmits ${r.retransmits}, drops ${c.drop_pkts}, CAS retries ${c.cas_retries}`,
        );
        // Payload/wire of a full frame is 1448/1514 = 0.956: the ideal.
        expect(ratio, 'goodput / configured').toBeGreaterThan(0.93);
        expect(ratio, 'goodput / configured').toBeLessThan(0.965);
        expect(firstRatio, 'receiver first second / configured').toBeLessThan(1.02);
      });

      it('holds UDP offered at 2x to the rate (±1%, wire bytes) while another port on the device is not shaped', async () => {
        shaper.apply(['{ name: u, port: 5302, protocol: udp, direction: egress, rate: 100mbit }', '{ name: web, port: 5301, protocol: tcp, direction: egress, rate: 100mbit }'], ', ingress: false, qdisc: replace');
        const udp = (port: number, bitrate: number, parallel = 1) =>
          runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port, udp: true, reverse: true, bitrate, length: 1400, seconds: 4, parallel });
        // Two sockets: twice the default socket buffer queued in the class, so
        // a sender descheduled on a busy machine does not let the queue run dry.
        const [limited, other] = await Promise.all([udp(5302, 100 * MBIT, 2), udp(5303, 50 * MBIT)]);
        // Steady state: the receiver's seconds after the first (which holds the burst).
        const steady = limited.intervals.slice(1);
        const wireBits = steady.reduce((sum, i) => sum + (i.bytes / 1400) * udpWireBytes(1400) * 8, 0);
        const ratio = wireBits / steady.reduce((t, i) => t + i.end - i.start, 0) / (100 * MBIT);
        const c = shaper.counters('u/egress');
        const offered = (limited.sentBytes * 8) / limited.seconds / (200 * MBIT);
        console.info(
          `shape udp 2x: delivered/configured ${ratio.toFixed(4)} (whole run ${(udpWireBitsPerSecond(limited) / (100 * MBIT)).toFixed(4)}); ` +
            `the local sender blocks (its socket buffer fills while packets queue in the class): sent ${offered.toFixed(2)} of what it offered, ` +
            `${limited.lostPackets} lost, ${c.drop_pkts} horizon drops`,
        );
        expect(ratio, 'delivered / configured').toBeGreaterThan(0.99);
        expect(ratio, 'delivered / configured').toBeLessThan(1.01);
        expect(limited.lostPackets! / (limited.receivedPackets! + limited.lostPackets!), 'a shaper queues: no loss').toBeLessThan(0.01);
        expect(other.lostPackets! / (other.receivedPackets! + other.lostPackets!), 'loss on the unshaped port').toBeLessThan(0.01);
      });

      it('shares one port between 4 TCP flows (Jain\'s fairness index reported)', async () => {
        const r = await tcp(5301, 4, 4);
        const bytes = streamBytes(r);
        const index = jain(bytes);
        const ratio = tcpGoodputBitsPerSecond(r) / (100 * MBIT);
        console.info(`shape tcp 4 flows at 100 Mbit/s: aggregate ${ratio.toFixed(4)}, Jain's index ${index.toFixed(4)} (${bytes.map((b) => (b / 1e6).toFixed(1)).join(' / ')} MB)`);
        expect(bytes).toHaveLength(4);
        expect(ratio, 'aggregate goodput / configured').toBeGreaterThan(0.93);
        expect(ratio, 'aggregate goodput / configured').toBeLessThan(0.965);
        expect(index, 'no flow starved').toBeGreaterThan(0.5);
      });
    });
  },
  { tools: ['iperf3'] },
);

describeKernel(
  'shaping forwarded traffic: the queue bounded by the horizon, or by ECN marks',
  () => {
    let topo: RoutedTopology;
    let shaper: Shaper;

    beforeAll(async () => {
      topo = await createRoutedTopology('shapefwd');
      // Reno fills a queue until it loses (CUBIC's HyStart leaves early on
      // delay), so the queue the shaper must bound really builds.
      await nsExec(topo.nsA, ['sysctl', '-q', '-w', 'net.ipv4.tcp_congestion_control=reno']);
      shaper = new Shaper(topo.nsR, topo.ifRB, testPinDir('shapefwd'));
    });
    afterAll(async () => {
      shaper?.close();
      await topo?.destroy();
    });

    const send = () => runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5401, seconds: 4 });

    it('without ECN, the RTT of a forwarded flow stays within the horizon', async () => {
      // The router shapes what it forwards to B; the remote port is the server's.
      shaper.apply(['{ name: fwd, port: 5401, protocol: tcp, side: remote, direction: egress, rate: 100mbit, horizon: 20ms }']);
      const r = await send();
      const rtt = senderRtt(r);
      const ratio = tcpGoodputBitsPerSecond(r) / (100 * MBIT);
      const c = shaper.counters('fwd/egress');
      console.info(`forwarded, no ECN: goodput/configured ${ratio.toFixed(4)}, RTT mean ${rtt.mean.toFixed(2)} ms max ${rtt.max.toFixed(2)} ms, horizon drops ${c.drop_pkts}, retransmits ${r.retransmits}`);
      expect(rtt.max, 'max RTT (ms): the 20 ms horizon plus the base path').toBeLessThan(20 + 5);
      expect(c.drop_pkts, 'the horizon, not an unbounded queue, stopped the sender').toBeGreaterThan(0n);
      expect(ratio).toBeGreaterThan(0.93);
    });

    it('with ECN on both ends, the RTT stays near the marking delay and marks replace drops', async () => {
      for (const ns of [topo.nsA, topo.nsB]) await nsExec(ns, ['sysctl', '-q', '-w', 'net.ipv4.tcp_ecn=1']);
      shaper.apply(['{ name: fwd, port: 5401, protocol: tcp, side: remote, direction: egress, rate: 100mbit, horizon: 20ms, ecn: 2ms }']);
      const before = shaper.counters('fwd/egress');
      const r = await send();
      const rtt = senderRtt(r);
      const ratio = tcpGoodputBitsPerSecond(r) / (100 * MBIT);
      const c = shaper.counters('fwd/egress');
      const marks = c.mark_pkts - before.mark_pkts;
      const drops = c.drop_pkts - before.drop_pkts;
      console.info(`forwarded, ECN: goodput/configured ${ratio.toFixed(4)}, RTT mean ${rtt.mean.toFixed(2)} ms max ${rtt.max.toFixed(2)} ms, CE marks ${marks}, drops ${drops}, retransmits ${r.retransmits}`);
      expect(marks, 'packets marked CE').toBeGreaterThan(0n);
      expect(rtt.mean, 'mean RTT (ms) near the 2 ms marking delay').toBeLessThan(4);
      // Marks, not drops: slow start can overshoot the horizon once before the first marks take
      // effect (1 drop in 1 of 5 CI runs here, against ~400 marks); past that, nothing is dropped.
      expect(drops, 'marks, not drops').toBeLessThanOrEqual(2n);
      expect(marks, 'marks, not drops').toBeGreaterThan(100n * drops);
      expect(ratio).toBeGreaterThan(0.93);
    });
  },
  { tools: ['iperf3'] },
);
