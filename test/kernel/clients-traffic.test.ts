/**
 * Per-client, packet-rate and connection-rate limits with real traffic on a
 * veth pair: two clients (two addresses of the sender namespace) each held
 * to their own rate, an aggregate shared fairly, small UDP packets held to a
 * packet rate, and a SYN flood held to a connection rate while an
 * established connection on the same port keeps flowing.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel } from '../helpers/env.js';
import { PolicyHarness, testPinDir } from '../helpers/dataplane.js';
import { createTopology, nsExec, run, startProcess, type Topology } from '../helpers/net.js';
import { runIperf } from '../helpers/traffic.js';

const MBIT = 1_000_000;
const LEN = 1400;
const SECOND_CLIENT = '198.18.0.3';

/** A node program run in a namespace; prints one JSON line at the end. */
function nodeIn(ns: string, source: string, timeoutMs: number) {
  return startProcess('ip', ['netns', 'exec', ns, process.execPath, '-e', source], { ns, timeoutMs });
}

describeKernel(
  'per-client, packet and connection limits with real traffic',
  () => {
    let topo: Topology;
    let policy: PolicyHarness;

    beforeAll(async () => {
      topo = await createTopology('clienttraffic');
      await run('ip', ['-n', topo.nsA, 'addr', 'add', `${SECOND_CLIENT}/24`, 'dev', topo.ifA]);
      policy = new PolicyHarness(topo.nsB, topo.ifB, testPinDir('clienttraffic'));
    });
    afterAll(async () => {
      policy?.close();
      await topo?.destroy();
    });

    const udpFrom = (bind: string, port: number, bitrate: number, length = LEN, seconds = 3) =>
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port, udp: true, bitrate, length, seconds, bind });
    /**
     * What the program passed, per second, over a window in which every
     * sender surely runs (1 s after they start, for 2 s): the rule's counters
     * and each client's entry. Receiver-side numbers of two iperf3 runs would
     * add up their start-up skew.
     */
    const window = async (key: string, traffic: Promise<unknown>) => {
      const take = () => ({ t: process.hrtime.bigint(), rule: policy.counters(key), clients: policy.clients(key) });
      await new Promise((r) => setTimeout(r, 1000));
      const a = take();
      await new Promise((r) => setTimeout(r, 2000));
      const b = take();
      await traffic;
      const seconds = Number(b.t - a.t) / 1e9;
      const clientBits = (address: string) => (Number((b.clients.get(address)?.pass_bytes ?? 0n) - (a.clients.get(address)?.pass_bytes ?? 0n)) * 8) / seconds;
      return {
        bits: (Number(b.rule.pass_bytes - a.rule.pass_bytes) * 8) / seconds,
        packets: Number(b.rule.pass_pkts - a.rule.pass_pkts) / seconds,
        clientBits,
      };
    };

    it('holds each client to its own rate (±2%) while the other is unaffected', async () => {
      policy.apply(['{ name: pc, port: "5501-5502", protocol: udp, direction: ingress, rate: unlimited, client: { rate: 20mbit, burst: 20ms } }'], '');
      const flows = Promise.all([udpFrom(topo.ipA, 5501, 40 * MBIT, LEN, 4), udpFrom(SECOND_CLIENT, 5502, 10 * MBIT, LEN, 4)]);
      const w = await window('pc/ingress', flows);
      const [, b] = await flows;
      const ra = w.clientBits(topo.ipA) / (20 * MBIT);
      const lossB = b.lostPackets! / (b.receivedPackets! + b.lostPackets!);
      console.info(`per-client 20 Mbit/s: client A (2x offered) ${ra.toFixed(4)}; client B (0.5x offered) ${(w.clientBits(SECOND_CLIENT) / MBIT).toFixed(2)} Mbit/s, loss ${(100 * lossB).toFixed(2)}%`);
      expect(ra, 'client A passed / its rate').toBeGreaterThan(0.98);
      expect(ra, 'client A passed / its rate').toBeLessThan(1.02);
      expect(lossB, 'client B, under its own rate, loses nothing').toBeLessThan(0.01);
    });

    it('under an aggregate as well, holds the sum and gives each client a fair share', async () => {
      // The aggregate admits first come, first served; a client rate just above aggregate / clients is what
      // guarantees each its share (as with nftables meters or hashlimit under a global limit).
      policy.apply(['{ name: pc, port: "5501-5502", protocol: udp, direction: ingress, rate: 30mbit, burst: 20ms, client: { rate: 16mbit, burst: 20ms } }'], '');
      const flows = Promise.all([udpFrom(topo.ipA, 5501, 40 * MBIT, LEN, 4), udpFrom(SECOND_CLIENT, 5502, 40 * MBIT, LEN, 4)]);
      const w = await window('pc/ingress', flows);
      const sum = w.bits / (30 * MBIT);
      const shares = [w.clientBits(topo.ipA), w.clientBits(SECOND_CLIENT)].map((x) => x / (15 * MBIT));
      console.info(`aggregate 30 Mbit/s over 2 clients of 16: sum ${sum.toFixed(4)}, shares of 15 Mbit/s ${shares.map((x) => x.toFixed(3)).join(' / ')}`);
      expect(sum, 'sum / aggregate rate').toBeGreaterThan(0.98);
      expect(sum, 'sum / aggregate rate').toBeLessThan(1.02);
      for (const share of shares) expect(share, 'each client near half of the aggregate').toBeGreaterThan(0.9);
    });

    it('holds small UDP packets to a packet rate within ±1%', async () => {
      policy.apply(['{ name: pps, port: 5503, protocol: udp, direction: ingress, rate: unlimited, pps: 5kpps }'], '');
      const w = await window('pps/ingress', udpFrom(topo.ipA, 5503, 10_000 * (64 + 28) * 8, 64, 4));
      console.info(`pps limit 5000/s, 2x offered: passed ${w.packets.toFixed(0)} packets/s (${(w.packets / 5000).toFixed(4)})`);
      expect(w.packets / 5000).toBeGreaterThan(0.99);
      expect(w.packets / 5000).toBeLessThan(1.01);
    });

    it('holds a SYN flood to the connection rate while an established connection keeps flowing', async () => {
      policy.apply(['{ name: conn, port: 5504, protocol: tcp, direction: ingress, rate: unlimited, connections: 50/s }'], '');
      // A server that accepts everything and counts accepts and bytes per half second.
      const server = nodeIn(
        topo.nsB,
        `const net = require('node:net'); let accepted = 0, bytes = 0; const marks = [];
         net.createServer((s) => { accepted++; s.on('data', (d) => (bytes += d.length)); s.on('error', () => {}); }).listen(5504, '${topo.ipB}');
         setInterval(() => marks.push([accepted, bytes]), 500);
         setTimeout(() => { console.log(JSON.stringify(marks)); process.exit(0); }, 6000);`,
        15_000,
      );
      await new Promise((r) => setTimeout(r, 500));
      // The established connection: opened before the flood, sending 20 MB/s the whole time (paced, so
      // that what it achieves depends on the limit, not on the CPU time the flood itself takes).
      const stream = nodeIn(
        topo.nsA,
        `const s = require('node:net').connect(5504, '${topo.ipB}'); const chunk = Buffer.alloc(200_000);
         s.on('connect', () => setInterval(() => s.write(chunk), 10)); s.on('error', () => {});
         setTimeout(() => process.exit(0), 5000);`,
        15_000,
      );
      await new Promise((r) => setTimeout(r, 1500));
      // The flood: 400 new connections a second for 2 s, each given up after 300 ms (before SYN retransmission).
      const flood = nodeIn(
        topo.nsA,
        `const net = require('node:net'); let tried = 0, connected = 0;
         const t = setInterval(() => { tried++; const s = net.connect(5504, '${topo.ipB}');
           s.on('connect', () => { connected++; s.destroy(); }); s.on('error', () => {}); setTimeout(() => s.destroy(), 300); }, 2.5);
         setTimeout(() => { clearInterval(t); setTimeout(() => { console.log(JSON.stringify({ tried, connected })); process.exit(0); }, 400); }, 2000);`,
        15_000,
      );
      const floodOut = await flood.result;
      const marks = JSON.parse((await server.result).stdout) as [number, number][];
      await stream.result;
      const { tried, connected } = JSON.parse(floodOut.stdout) as { tried: number; connected: number };
      const c = policy.counters('conn/ingress');
      // Bytes of the established connection per half second, before the flood (0.5–1.5 s) and during it (2.5–3.5 s).
      const rate = (from: number, to: number) => (marks[to]![1] - marks[from]![1]) / ((to - from) * 0.5);
      const before = rate(1, 3);
      const during = rate(5, 7);
      console.info(
        `SYN flood: ${tried} connection attempts in 2 s, ${connected} connected (limit 50/s + a burst of 15), ${c.syn_drops} SYNs dropped; ` +
          `established connection ${(before / 1e6).toFixed(0)} MB/s before, ${(during / 1e6).toFixed(0)} MB/s during`,
      );
      expect(tried, 'the flood offered several times the limit').toBeGreaterThan(400);
      expect(connected, 'connections admitted: 2 s at 50/s plus the burst').toBeLessThanOrEqual(2 * 50 + 15 + 5);
      expect(connected).toBeGreaterThanOrEqual(2 * 50 * 0.8);
      expect(Number(c.syn_drops)).toBeGreaterThan(tried - connected - 20);
      expect(before, 'the established connection was streaming').toBeGreaterThan(5e6);
      expect(during / before, 'and keeps its throughput during the flood').toBeGreaterThan(0.9);
    });
  },
  { tools: ['iperf3'] },
);
