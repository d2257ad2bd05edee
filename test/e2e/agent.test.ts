/**
 * The real agent, started with nsenter inside a test namespace, enforcing a
 * policy on a veth while iperf3 sends: reload by SIGHUP and by file change,
 * an invalid policy rejected with the old rate still held, kill -9 during
 * traffic without a gap, adoption by a new agent, and re-attachment when the
 * veth is deleted and created again. Pinned maps are read independently.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { removePins } from '../../src/kernel/pins.js';
import { describeKernel } from '../helpers/env.js';
import { testPinDir } from '../helpers/dataplane.js';
import { AgentProcess, PinnedReader, PolicyDir, endAgentTest } from '../helpers/agent.js';
import { createTopology, run, tcFilters, type Topology } from '../helpers/net.js';
import { runIperf, udpWireBitsPerSecond, udpWireBytes, type IperfResult } from '../helpers/traffic.js';

const MBIT = 1_000_000;
const LEN = 1400;
const OUR_PREF = 0x5053;

describeKernel(
  'agent end to end on a veth (reload, invalid policy, kill -9, adoption, interface churn)',
  () => {
    let topo: Topology;
    let agent: AgentProcess | undefined;
    let reader: PinnedReader;
    let slot: number;
    const pinDir = testPinDir('e2e');
    const policy = new PolicyDir();

    const policyText = (rate: string) => `# e2e policy
pinDir: ${pinDir}
api:
  tokenFile: ${policy.dir}/token
interfaces:
  - name: ${topo.ifB}
rules:
  - name: udp
    port: 5201
    protocol: udp
    direction: ingress
    rate: ${rate}
    burst: 10ms
`;
    const udp = (bitrate: number, seconds = 3) =>
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5201, udp: true, bitrate, length: LEN, seconds, intervalSeconds: 0.5 });
    const ratio = (r: IperfResult, rate: number) => udpWireBitsPerSecond(r) / rate;

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('agente');
      policy.write(policyText('100mbit'));
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.applied();
      reader = new PinnedReader(pinDir);
      slot = reader.slotOf('udp/ingress')!;
      expect(slot, 'bucket udp/ingress is in the pinned ps_rules').toBeGreaterThan(0);
    });
    afterAll(() => endAgentTest({ agent, reader, topo, pinDir, policy }));

    it('enforces the policy: UDP at 2x is held to 100 Mbit/s', async () => {
      const r = await udp(200 * MBIT);
      expect(ratio(r, 100 * MBIT)).toBeGreaterThan(0.95);
      expect(ratio(r, 100 * MBIT)).toBeLessThan(1.05);
    });

    it('SIGHUP applies a new rate in the kernel quickly; counters continue', async () => {
      const before = reader.counts(slot);
      policy.write(policyText('50mbit'));
      // The file watcher may beat SIGHUP to it; either way, time the kernel change.
      const t0 = process.hrtime.bigint();
      agent!.signal('SIGHUP');
      while (reader.rule(slot).rate_bps !== 50_000_000n) {
        if (process.hrtime.bigint() - t0 > 5_000_000_000n) throw new Error(`rate not updated within 5 s:\n${agent!.tail()}`);
        await new Promise((r) => setTimeout(r, 1));
      }
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      console.info(`SIGHUP (or file change) to new rate in ps_rules: ${ms.toFixed(1)} ms`);
      expect(reader.slotOf('udp/ingress'), 'same slot after reload').toBe(slot);
      const after = reader.counts(slot);
      expect(after.pass_pkts, 'counters continue, not reset').toBeGreaterThanOrEqual(before.pass_pkts);
      const r = await udp(100 * MBIT);
      expect(ratio(r, 50 * MBIT)).toBeGreaterThan(0.95);
      expect(ratio(r, 50 * MBIT)).toBeLessThan(1.05);
    });

    it('rejects an invalid policy whole: the old rate stays in force and the reason is logged', async () => {
      const mark = agent!.logs.length;
      policy.write(policyText('10mbps'));
      agent!.signal('SIGHUP');
      const rejected = await agent!.waitFor((r) => r.msg.startsWith('policy rejected'), 10_000, mark);
      expect(String(rejected.errors)).toMatch(/ambiguous unit "mbps"/);
      expect(reader.rule(slot).rate_bps).toBe(50_000_000n);
      const r = await udp(100 * MBIT);
      expect(ratio(r, 50 * MBIT)).toBeLessThan(1.05);
      policy.write(policyText('50mbit'));
    });

    it('kill -9 during traffic: the rate stays held every half second; a new agent adopts without resetting counters', async () => {
      const traffic = udp(100 * MBIT, 4);
      await new Promise((r) => setTimeout(r, 1500));
      await agent!.kill();
      const beforeAdopt = reader.counts(slot);
      const r = await traffic;
      // Every interval after the first (which may hold the 10 ms burst) is at
      // most the rate. Interval bytes are received payload: datagrams × LEN.
      const perInterval = r.intervals.slice(1).map((i) => ((i.bytes / LEN) * udpWireBytes(LEN) * 8) / (i.end - i.start) / (50 * MBIT));
      expect(Math.max(...perInterval), `delivered/configured per 0.5 s: ${perInterval.map((x) => x.toFixed(3)).join(' ')}`).toBeLessThan(1.06);
      expect(ratio(r, 50 * MBIT)).toBeLessThan(1.05);
      const mid = reader.counts(slot);
      expect(mid.drop_pkts, 'drops continued with no agent running').toBeGreaterThan(beforeAdopt.drop_pkts);

      agent = AgentProcess.start(topo.nsB, policy.path);
      const adopted = await agent.waitFor((l) => l.msg.startsWith('adopted pinned maps'));
      expect(adopted.adopted).toBe(true);
      await agent.applied();
      expect(reader.slotOf('udp/ingress')).toBe(slot);
      const after = reader.counts(slot);
      expect(after.pass_pkts).toBeGreaterThanOrEqual(mid.pass_pkts);
      expect(after.drop_pkts).toBeGreaterThanOrEqual(mid.drop_pkts);
    });

    it('re-attaches within 2 s when the veth is deleted and created again', async () => {
      await run('ip', ['-n', topo.nsB, 'link', 'del', topo.ifB]);
      await run('ip', ['link', 'add', topo.ifA, 'netns', topo.nsA, 'type', 'veth', 'peer', 'name', topo.ifB, 'netns', topo.nsB]);
      const t0 = Date.now();
      await run('ip', ['-n', topo.nsA, 'addr', 'add', `${topo.ipA}/24`, 'dev', topo.ifA]);
      await run('ip', ['-n', topo.nsB, 'addr', 'add', `${topo.ipB}/24`, 'dev', topo.ifB]);
      await run('ip', ['-n', topo.nsA, 'link', 'set', topo.ifA, 'up']);
      await run('ip', ['-n', topo.nsB, 'link', 'set', topo.ifB, 'up']);
      for (;;) {
        const ours = (await tcFilters(topo.nsB, topo.ifB, 'ingress')).some((f) => f.pref === OUR_PREF);
        if (ours) break;
        if (Date.now() - t0 > 2000) throw new Error(`not re-attached within 2 s:\n${agent!.tail()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      console.info(`veth recreated → our filter back on ingress after ${Date.now() - t0} ms`);
      const r = await udp(100 * MBIT);
      expect(ratio(r, 50 * MBIT)).toBeGreaterThan(0.95);
      expect(ratio(r, 50 * MBIT)).toBeLessThan(1.05);
    });

    it('a clean stop (SIGTERM) exits 0 and keeps enforcing; --detach-on-exit removes our filters only', async () => {
      agent!.signal('SIGTERM');
      expect(await agent!.exited, agent!.tail()).toEqual({ code: 0, signal: null });
      expect((await tcFilters(topo.nsB, topo.ifB, 'ingress')).some((f) => f.pref === OUR_PREF), 'still attached after SIGTERM').toBe(true);

      agent = AgentProcess.start(topo.nsB, policy.path, ['--detach-on-exit']);
      await agent.applied();
      agent.signal('SIGTERM');
      expect(await agent.exited, agent.tail()).toEqual({ code: 0, signal: null });
      expect((await tcFilters(topo.nsB, topo.ifB, 'ingress')).some((f) => f.pref === OUR_PREF), 'detached after --detach-on-exit').toBe(false);
    });
  },
  { tools: ['nsenter'] },
);
