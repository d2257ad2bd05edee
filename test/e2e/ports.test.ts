/**
 * "Know your ports" end to end: the real agent in a test namespace on a veth
 * with countUnmatched on; listeners started by the test appear in
 * `portshaper ports --json` with their process; UDP to a port no rule names
 * shows up as unmatched traffic in the API and on `portshaper top`'s screen
 * (run under tmux at 80×24, read with capture-pane, quit with q); a rule on a
 * port nothing listens on is flagged; and the per-packet cost of the
 * accounting, on and off, by the kernel's own bpf_stats.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PortEntry, PortsView } from '../../src/api/ports-schemas.js';
import { removePins } from '../../src/kernel/pins.js';
import { progStats, nsPerRun } from '../../bench/lib/bpfstats.js';
import { AgentProcess, CLI, PolicyDir, purgeAgent } from '../helpers/agent.js';
import { testPinDir } from '../helpers/dataplane.js';
import { describeKernel } from '../helpers/env.js';
import { createTopology, nsEnterArgv, run, startProcess, tcFilters, type RunningProcess, type Topology } from '../helpers/net.js';

const TCP_PORT = 7070;
const UDP_PORT = 7071;
const TYPO_PORT = 7079;
const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

// A UDP sender for a bounded time: `count` 1000-byte datagrams every 10 ms.
const SENDER = `
const dgram = await import('node:dgram');
const [host, port, ms, count] = process.argv.slice(1);
const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const payload = Buffer.alloc(1000);
const until = Date.now() + Number(ms);
while (Date.now() < until) {
  for (let i = 0; i < Number(count); i++) s.send(payload, Number(port), host);
  await new Promise((r) => setTimeout(r, 10));
}
s.close();
`;

describeKernel(
  'ports, unmatched traffic and top with the real agent on a veth',
  () => {
    let topo: Topology;
    let agent: AgentProcess;
    const pinDir = testPinDir('ports');
    const policy = new PolicyDir();
    const tmuxSession = `ps-top-${process.pid}`;
    const listeners: RunningProcess[] = [];

    const policyText = (count: boolean) => `pinDir: ${pinDir}
interfaces:
  - name: ${topo.ifB}
    countUnmatched: ${count}
api:
  tokenFile: ${policy.dir}/token
rules:
  - name: typo
    port: ${TYPO_PORT}
    protocol: tcp
    direction: ingress
    rate: 10mbit
`;
    const cli = (args: string[]) => run(nsEnterArgv(topo.nsB, [process.execPath, CLI, ...args])[0]!, nsEnterArgv(topo.nsB, [process.execPath, CLI, ...args]).slice(1), { timeoutMs: 20_000 });
    const ports = async (): Promise<PortsView> => JSON.parse((await cli(['ports', '--json', '--all', '--token-file', `${policy.dir}/token`])).stdout) as PortsView;
    const entry = (view: PortsView, port: number, protocol: string): PortEntry | undefined => view.ports.find((p) => p.port === port && p.protocol === protocol && p.side === 'local');
    const send = (ms: number, count = 5) => {
      const argv = nsEnterArgv(topo.nsA, [process.execPath, '--input-type=module', '-e', SENDER, topo.ipB, String(UDP_PORT), String(ms), String(count)]);
      return startProcess(argv[0]!, argv.slice(1), { timeoutMs: ms + 10_000 });
    };

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('ports');
      for (const code of [
        `require('node:net').createServer().listen(${TCP_PORT}, '0.0.0.0')`,
        `require('node:dgram').createSocket('udp4').bind(${UDP_PORT}, '0.0.0.0')`,
      ]) {
        const argv = nsEnterArgv(topo.nsB, [process.execPath, '-e', code]);
        listeners.push(startProcess(argv[0]!, argv.slice(1), { timeoutMs: 120_000 }));
      }
      policy.write(policyText(true));
      agent = AgentProcess.start(topo.nsB, policy.path);
      await agent.waitFor((r) => r.msg === 'API listening');
    });
    afterAll(async () => {
      await run('tmux', ['kill-session', '-t', tmuxSession], { allowFailure: true });
      await agent?.kill();
      for (const l of listeners) await l.stop(1000);
      await purgeAgent(topo?.nsB, pinDir);
      await topo?.destroy();
      policy.remove();
    });

    it('lists the listeners the test started, with their process, and flags the rule nothing listens on', async () => {
      let view: PortsView | undefined;
      for (let i = 0; i < 20 && !(view && entry(view, TCP_PORT, 'tcp') && entry(view, UDP_PORT, 'udp')); i++) {
        if (i) await new Promise((r) => setTimeout(r, 250));
        view = await ports();
      }
      const tcp = entry(view!, TCP_PORT, 'tcp');
      const udp = entry(view!, UDP_PORT, 'udp');
      expect(tcp?.listeners, `listener on ${TCP_PORT}/tcp`).toMatchObject([{ address: '0.0.0.0', scope: 'wildcard', uid: 0, process: { command: 'node', pid: listeners[0]!.pid } }]);
      expect(udp?.listeners, `listener on ${UDP_PORT}/udp`).toMatchObject([{ address: '0.0.0.0', process: { command: 'node', pid: listeners[1]!.pid } }]);
      expect(tcp?.flags.map((f) => f.code), 'an unlimited wildcard listener is flagged').toEqual(['wildcard-unlimited']);
      const typo = entry(view!, TYPO_PORT, 'tcp');
      expect(typo?.flags.map((f) => f.code), `rule on ${TYPO_PORT} with no listener`).toEqual(['no-listener']);
      expect(view!.countingUnmatched).toBe(true);
      const table = (await cli(['ports', '--token-file', `${policy.dir}/token`])).stdout;
      console.log(`portshaper ports:\n${table}`);
      expect(table).toContain(`! no-listener: rule "typo" names ${TYPO_PORT}/tcp`);
    });

    it('shows traffic on a port without a rule in the API and on top under tmux; q quits', async () => {
      const sender = send(8000);
      try {
        let udp: PortEntry | undefined;
        // Rates are averaged over the sampler's window: wait until the window holds the traffic, not just its start.
        for (let i = 0; i < 20 && !(udp && udp.ingress.bitsPerSecond > 100_000); i++) {
          await new Promise((r) => setTimeout(r, 500));
          udp = entry(await ports(), UDP_PORT, 'udp');
        }
        expect(udp?.ingress, `unmatched traffic on ${UDP_PORT}/udp`).toMatchObject({ source: 'unmatched', rules: [] });
        expect(udp!.ingress.packets).toBeGreaterThan(0);
        expect(udp!.ingress.bitsPerSecond).toBeGreaterThan(100_000);

        const top = nsEnterArgv(topo.nsB, [process.execPath, CLI, 'top', '--token-file', `${policy.dir}/token`]).join(' ');
        await run('tmux', ['new-session', '-d', '-s', tmuxSession, '-x', '80', '-y', '24', top]);
        let screen = '';
        for (let i = 0; i < 30 && !new RegExp(`^${UDP_PORT}\\s+udp\\s+in\\s+\\d`, 'm').test(screen); i++) {
          await new Promise((r) => setTimeout(r, 250));
          screen = (await run('tmux', ['capture-pane', '-p', '-t', tmuxSession])).stdout;
        }
        console.log(`portshaper top (tmux 80x24):\n${screen}`);
        expect(screen).toMatch(/^portshaper top {2}\d\d:\d\d:\d\d {2}sort: rate/m);
        expect(screen).toMatch(new RegExp(`^${UDP_PORT}\\s+udp\\s+in\\s+[0-9.]+[km]?bit\\s+-\\s+0\\s+0\\s+\\*\\s+node\\[${listeners[1]!.pid}\\]`, 'm'));
        for (const line of screen.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
        await run('tmux', ['send-keys', '-t', tmuxSession, 'q']);
        let alive = true;
        for (let i = 0; i < 20 && alive; i++) {
          await new Promise((r) => setTimeout(r, 100));
          alive = (await run('tmux', ['has-session', '-t', tmuxSession], { allowFailure: true })).code === 0;
        }
        expect(alive, 'top quit on q (its tmux session ended)').toBe(false);
      } finally {
        await sender.stop(500);
      }
    });

    it('measures the per-packet cost of the accounting (bpf_stats, on vs off)', async () => {
      const progId = (await tcFilters(topo.nsB, topo.ifB, 'ingress')).find((f) => f.pref === 0x5053)?.progId;
      expect(progId, 'our ingress program on the veth').toBeDefined();
      const old = readFileSync(BPF_STATS, 'utf8').trim();
      writeFileSync(BPF_STATS, '1');
      const results: Record<'on' | 'off', number[]> = { on: [], off: [] };
      try {
        for (const round of [0, 1]) {
          for (const mode of ['off', 'on'] as const) {
            const seen = agent.logs.length;
            policy.write(policyText(mode === 'on'));
            await agent.applied(seen);
            const before = await progStats(progId!);
            await send(2000, 20).result;
            results[mode].push(nsPerRun(before, await progStats(progId!)));
          }
          void round;
        }
      } finally {
        if (existsSync(BPF_STATS)) writeFileSync(BPF_STATS, old);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      console.log(
        `unmatched-port accounting, ns per packet (bpf_stats, UDP 1000 B to an unmatched port): ` +
          `off ${results.off.map((x) => x.toFixed(1)).join(', ')}; on ${results.on.map((x) => x.toFixed(1)).join(', ')}; ` +
          `difference of medians ${(median(results.on) - median(results.off)).toFixed(1)} ns`,
      );
      for (const x of [...results.on, ...results.off]) expect(Number.isFinite(x), 'the program ran during each window').toBe(true);
    });
  },
  { tools: ['tmux'] },
);
