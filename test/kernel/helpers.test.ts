/**
 * Proves the network test helpers on the real kernel: if these fail, kernel
 * tests of portshaper itself would measure the fixture, not the shaper.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeKernel, which } from '../helpers/env.js';
import {
  addForeignFilter,
  createTopology,
  destroyAllTopologies,
  foreignFilterPackets,
  foreignFilterStats,
  linkStats,
  listNamespaces,
  namespaceExists,
  nsEnterArgv,
  nsExec,
  run,
  tcFilters,
  withTopology,
  type Topology,
} from '../helpers/net.js';
import { runIperf, tcpGoodputBitsPerSecond, udpWireBitsPerSecond, udpWireBytes } from '../helpers/traffic.js';

const PORT = 5201;
const T = 60_000;

async function ping(ns: string, ip: string, count = 1): Promise<void> {
  await nsExec(ns, ['ping', '-c', String(count), '-i', '0.2', '-W', '1', ip], { timeoutMs: 10_000 });
}

describeKernel(
  'network test helpers',
  () => {
    let topo: Topology | undefined;
    let leakedNs: string | undefined;
    const t = (): Topology => {
      if (!topo) throw new Error('topology not created');
      return topo;
    };

    beforeAll(async () => {
      topo = await createTopology('helpers');
    }, T);

    afterAll(async () => {
      await topo?.destroy();
      await destroyAllTopologies();
      // The topology created by the throwing test below had no finally: only
      // the process-wide registry can have removed it.
      if (leakedNs) expect(await namespaceExists(leakedNs)).toBe(false);
      const ours = (await listNamespaces()).filter((n) => n.endsWith(`-${process.pid}-a`) || n.endsWith(`-${process.pid}-b`));
      expect(ours).toEqual([]);
    }, T);

    it('creates two namespaces joined by a veth with short names and netlink ifindexes', async () => {
      const { nsA, nsB, ifA, ifB, ifindexA, ifindexB } = t();
      expect(nsA).toBe(`ps-helpers-${process.pid}-a`);
      expect(await listNamespaces()).toEqual(expect.arrayContaining([nsA, nsB]));
      expect(ifA.length).toBeLessThanOrEqual(15);
      expect(ifB.length).toBeLessThanOrEqual(15);
      expect(ifindexA).toBeGreaterThan(0);
      expect(ifindexB).toBeGreaterThan(0);
      // The veth never shows up on the host.
      const host = await run('ip', ['-j', 'link', 'show']);
      expect(host.stdout).not.toContain(`"${ifA}"`);
    });

    it('pings both ways over IPv4 and IPv6', async () => {
      const { nsA, nsB, ipA, ipB, ip6A, ip6B } = t();
      await ping(nsA, ipB);
      await ping(nsB, ipA);
      await ping(nsA, ip6B);
      await ping(nsB, ip6A);
    }, T);

    it('nsEnterArgv runs a command in the namespace', async () => {
      const [cmd, ...args] = nsEnterArgv(t().nsA, ['ip', '-j', 'link', 'show', 'dev', t().ifA]);
      const r = await run(cmd!, args);
      expect(JSON.parse(r.stdout)[0].ifindex).toBe(t().ifindexA);
    });

    it('TCP over the veth exceeds 100 Mbit/s, with receiver-side intervals', async () => {
      const r = await runIperf({ nsClient: t().nsB, nsServer: t().nsA, serverIp: t().ipA, port: PORT, seconds: 2 });
      const mbps = tcpGoodputBitsPerSecond(r) / 1e6;
      console.log(`TCP B->A: ${mbps.toFixed(0)} Mbit/s, ${r.retransmits} retransmits`);
      expect(r.protocol).toBe('tcp');
      expect(mbps).toBeGreaterThan(100);
      expect(r.seconds).toBeGreaterThan(1.9);
      expect(r.intervals.length).toBeGreaterThanOrEqual(2);
      expect(r.retransmits).toBeTypeOf('number');
    }, T);

    it('TCP reverse mode (-R) pinned to a CPU reports the client as receiver', async () => {
      const r = await runIperf({ nsClient: t().nsB, nsServer: t().nsA, serverIp: t().ipA, port: PORT, seconds: 1, reverse: true, cpu: 0 });
      expect(r.reverse).toBe(true);
      expect(tcpGoodputBitsPerSecond(r)).toBeGreaterThan(100e6);
      expect(r.intervals.length).toBeGreaterThanOrEqual(1);
    }, T);

    it('UDP at 50 Mbit/s is delivered within ±5% by wire-bit computation', async () => {
      const bitrate = 50e6;
      const length = 1000;
      const r = await runIperf({
        nsClient: t().nsB,
        nsServer: t().nsA,
        serverIp: t().ipA,
        port: PORT,
        udp: true,
        bitrate,
        length,
        seconds: 2,
      });
      // iperf3's -b paces payload bits; the wire carries headers on top.
      const expectedWire = (bitrate * udpWireBytes(length, 4)) / length;
      const ratio = udpWireBitsPerSecond(r) / expectedWire;
      console.log(
        `UDP B->A: ${r.receivedPackets} pkts received, ${r.lostPackets} lost, wire ${(udpWireBitsPerSecond(r) / 1e6).toFixed(2)} Mbit/s, delivered ratio ${ratio.toFixed(4)}`,
      );
      expect(r.length).toBe(length);
      expect(ratio).toBeGreaterThan(0.95);
      expect(ratio).toBeLessThan(1.05);
      expect(r.intervals.every((i) => i.packets !== undefined)).toBe(true);
    }, T);

    it('UDP over IPv6 accounts 40-byte IP headers', async () => {
      const r = await runIperf({ nsClient: t().nsB, nsServer: t().nsA, serverIp: t().ip6A, port: PORT, udp: true, bitrate: 10e6, length: 1000, seconds: 1 });
      expect(r.family).toBe(6);
      const expected = (r.receivedPackets! * (1000 + 8 + 40 + 14) * 8) / r.seconds;
      expect(udpWireBitsPerSecond(r)).toBeCloseTo(expected, 6);
    }, T);

    it('linkStats sees traffic', async () => {
      const before = await linkStats(t().nsA, t().ifA);
      await ping(t().nsB, t().ipA, 3);
      const after = await linkStats(t().nsA, t().ifA);
      expect(after.rxPackets - before.rxPackets).toBeGreaterThanOrEqual(3);
      expect(after.txPackets - before.txPackets).toBeGreaterThanOrEqual(3);
      expect(after.rxBytes).toBeGreaterThan(before.rxBytes);
    }, T);

    it('a foreign filter is listed and counts packets without disturbing them', async () => {
      const f = await addForeignFilter(t().nsA, t().ifA, 'ingress', { pref: 49000, handle: 0x70 });
      const listed = await tcFilters(t().nsA, t().ifA, 'ingress');
      expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ pref: 49000, handle: 0x70, kind: 'bpf', directAction: true })]));
      expect(await foreignFilterPackets(f)).toBe(0);
      await ping(t().nsB, t().ipA, 3);
      const s = await foreignFilterStats(f);
      expect(s.packets).toBeGreaterThanOrEqual(3);
      expect(s.bytes).toBeGreaterThanOrEqual(3 * 98);
      expect(await tcFilters(t().nsA, t().ifA, 'egress')).toEqual([]);
    }, T);

    it('the vlan option carries tagged frames end to end', async () => {
      await withTopology('vlan', { vlan: 42 }, async (v) => {
        const egress = await tcFilters(v.nsA, v.ifA, 'egress');
        expect(egress.map((f) => f.progName)).toContain('vlan_push');
        // vlan_pop drops untagged frames, so any reply proves the tags.
        await ping(v.nsA, v.ipB);
        await ping(v.nsB, v.ip6A);
        const r = await runIperf({ nsClient: v.nsB, nsServer: v.nsA, serverIp: v.ipA, port: PORT, seconds: 1 });
        expect(tcpGoodputBitsPerSecond(r)).toBeGreaterThan(100e6);
      });
    }, T);

    it('mtu and offload options are applied', async () => {
      await withTopology('opts', { mtu: 1400, offloads: { gso: false, tso: false } }, async (o) => {
        const link = JSON.parse((await run('ip', ['-j', '-n', o.nsA, 'link', 'show', 'dev', o.ifA])).stdout);
        expect(link[0].mtu).toBe(1400);
        if (which('ethtool')) {
          const k = await nsExec(o.nsA, ['ethtool', '-k', o.ifA]);
          expect(k.stdout).toMatch(/generic-segmentation-offload: off/);
          expect(k.stdout).toMatch(/tcp-segmentation-offload: off/);
        }
        await ping(o.nsA, o.ipB);
      });
    }, T);

    it('destroy() removes both namespaces and is idempotent', async () => {
      const g = await createTopology('gone');
      expect(await namespaceExists(g.nsA)).toBe(true);
      await g.destroy();
      await g.destroy();
      const names = await listNamespaces();
      expect(names).not.toContain(g.nsA);
      expect(names).not.toContain(g.nsB);
    }, T);

    it('cleans up when a test body throws', async () => {
      let name = '';
      await expect(
        withTopology('boom', {}, async (b) => {
          name = b.nsA;
          throw new Error('test body failed');
        }),
      ).rejects.toThrow('test body failed');
      expect(await namespaceExists(name)).toBe(false);

      // No finally here on purpose: afterAll checks the registry removed it.
      try {
        const l = await createTopology('leak');
        leakedNs = l.nsA;
        throw new Error('test body failed');
      } catch (e) {
        expect((e as Error).message).toBe('test body failed');
      }
      expect(await namespaceExists(leakedNs!)).toBe(true);
    }, T);
  },
  { tools: ['ping', 'clang', 'taskset', 'nsenter'] },
);
