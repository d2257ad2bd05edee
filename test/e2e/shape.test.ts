/**
 * The real agent shaping a TCP port on a veth: killed with -9 in the middle
 * of a transfer, the HTB class and the program keep shaping with no gap; a
 * new agent adopts the class in place (same class, same queue, counters
 * carry on); detaching restores the device's default root qdisc.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { removePins } from '../../src/kernel/pins.js';
import { describeKernel } from '../helpers/env.js';
import { testPinDir } from '../helpers/dataplane.js';
import { AgentProcess, CLI, PinnedReader, PolicyDir, endAgentTest } from '../helpers/agent.js';
import { createTopology, htbClasses, nsEnterArgv, qdiscs, run, type Topology } from '../helpers/net.js';
import { runIperf, tcpGoodputBitsPerSecond } from '../helpers/traffic.js';

const MBIT = 1_000_000;
const RATE = 50 * MBIT;

describeKernel(
  'agent shaping end to end (kill -9 under traffic, adoption of the HTB class, detach restores the qdisc)',
  () => {
    let topo: Topology;
    let agent: AgentProcess | undefined;
    let reader: PinnedReader;
    const pinDir = testPinDir('e2eshape');
    const policy = new PolicyDir();

    const rootKind = async () => (await qdiscs(topo.nsB, topo.ifB)).find((q) => q.root)?.kind;
    const leaf = async () => (await qdiscs(topo.nsB, topo.ifB)).find((q) => q.parent === '5053:1');

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('agentshape');
      policy.write(`pinDir: ${pinDir}
api:
  listen: 127.0.0.1:9187
  tokenFile: ${policy.dir}/token
interfaces:
  - name: ${topo.ifB}
rules:
  - name: dl
    port: 5301
    protocol: tcp
    direction: egress
    rate: 50mbit
`);
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.applied();
      reader = new PinnedReader(pinDir);
    });
    afterAll(() => endAgentTest({ agent, reader, topo, pinDir, policy }));

    it('kill -9 during a transfer: every second stays shaped to the rate; a new agent adopts the class and its queue', async () => {
      const classBefore = await htbClasses(topo.nsB, topo.ifB);
      expect(classBefore, 'the agent installed the class').toEqual([['5053:1', '50Mbit']]);
      const transfer = runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5301, reverse: true, seconds: 5 });
      await new Promise((r) => setTimeout(r, 1500));
      await agent!.kill();
      const r = await transfer;
      // Receiver seconds: shaped before, during and after the kill (no gap, no burst).
      const perSecond = r.intervals.map((i) => (i.bytes * 8) / (i.end - i.start) / RATE);
      console.info(`agent killed at 1.5 s: receiver goodput/configured per second ${perSecond.map((x) => x.toFixed(3)).join(' ')}`);
      expect(Math.max(...perSecond), 'no second above the rate').toBeLessThan(1.02);
      expect(Math.min(...perSecond.slice(1)), 'no second starved').toBeGreaterThan(0.9);
      expect(tcpGoodputBitsPerSecond(r) / RATE).toBeGreaterThan(0.93);
      const queueAfterKill = await leaf();

      agent = AgentProcess.start(topo.nsB, policy.path);
      expect((await agent.waitFor((l) => l.msg.startsWith('adopted pinned maps'))).adopted).toBe(true);
      await agent.applied();
      expect(await htbClasses(topo.nsB, topo.ifB), 'same class').toEqual(classBefore);
      const queueAdopted = await leaf();
      expect(queueAdopted?.handle, 'same leaf queue (not recreated)').toBe(queueAfterKill?.handle);
      expect(queueAdopted?.bytes as number, 'its counters carry on').toBeGreaterThanOrEqual(queueAfterKill?.bytes as number);
      expect(reader.rule(reader.slotOf('dl/egress')!).classid >>> 0, 'the rule still names 5053:1').toBe(0x5053_0001);
    });

    it('a rate change through SIGHUP changes the class in place', async () => {
      const before = await leaf();
      policy.write(policy.read().replace('rate: 50mbit', 'rate: 20mbit'));
      const mark = agent!.logs.length;
      agent!.signal('SIGHUP');
      await agent!.applied(mark);
      expect(await htbClasses(topo.nsB, topo.ifB)).toEqual([['5053:1', '20Mbit']]);
      expect((await leaf())?.handle).toBe(before?.handle);
      const r = await runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5301, reverse: true, seconds: 3 });
      expect(tcpGoodputBitsPerSecond(r) / (20 * MBIT)).toBeGreaterThan(0.93);
      expect(tcpGoodputBitsPerSecond(r) / (20 * MBIT)).toBeLessThan(0.97);
    });

    it('--detach-on-exit removes the filters and the HTB root: the default qdisc is back', async () => {
      agent!.signal('SIGTERM');
      expect(await agent!.exited, agent!.tail()).toEqual({ code: 0, signal: null });
      expect(await rootKind(), 'a clean stop keeps shaping').toBe('htb');
      agent = AgentProcess.start(topo.nsB, policy.path, ['--detach-on-exit']);
      await agent.applied();
      agent.signal('SIGTERM');
      expect(await agent.exited, agent.tail()).toEqual({ code: 0, signal: null });
      expect(await rootKind(), 'default root restored').toBe('noqueue');
      // portshaper detach does the same for a device the agent left shaped.
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.applied();
      await agent.kill();
      agent = undefined;
      const [cmd, ...args] = nsEnterArgv(topo.nsB, [process.execPath, CLI, 'detach', '--pin-dir', pinDir]);
      await run(cmd!, args);
      expect(await rootKind(), 'portshaper detach restored it').toBe('noqueue');
    });
  },
  { tools: ['nsenter', 'iperf3'] },
);
