/**
 * The agent as a Kubernetes DaemonSet runs it, on the real kernel: the
 * policy is a ConfigMap volume (kubelet's layout and update replayed step by
 * step, mounted read-only), NODE_NAME selects a per-node file, and
 * /metrics, /healthz and /readyz are served on the node's address by a
 * second listener and scraped from another namespace (another node), while
 * the API stays on loopback. Rates are read from the pinned maps, not
 * through the agent; traffic is real iperf3 UDP between two namespaces.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readOnlyReason } from '../../src/controller/source.js';
import { removePins } from '../../src/kernel/pins.js';
import { AgentProcess, CLI, PinnedReader, PolicyDir, purgeAgent } from '../helpers/agent.js';
import { ConfigMapVolume } from '../helpers/configmap.js';
import { testPinDir } from '../helpers/dataplane.js';
import { describeKernel } from '../helpers/env.js';
import { createTopology, nsEnterArgv, run, type Topology } from '../helpers/net.js';
import { runIperf, udpWireBitsPerSecond } from '../helpers/traffic.js';

const MBIT = 1_000_000;
const NODE = 'worker-1';
const METRICS_PORT = 9181;

/** An HTTP request made from inside namespace ns (a node process with fetch); status 0 when the connection fails. */
async function httpIn(ns: string, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string }> {
  const script = `
const init = JSON.parse(process.argv[2]);
try {
  const res = await fetch(process.argv[1], { ...init, signal: AbortSignal.timeout(5000) });
  process.stdout.write(JSON.stringify({ status: res.status, body: await res.text() }));
} catch (e) {
  process.stdout.write(JSON.stringify({ status: 0, body: String(e.cause ?? e) }));
}`;
  const argv = nsEnterArgv(ns, [process.execPath, '--input-type=module', '-e', script, url, JSON.stringify(init)]);
  const r = await run(argv[0]!, argv.slice(1), { timeoutMs: 10_000 });
  return JSON.parse(r.stdout) as { status: number; body: string };
}

/** Value of one sample of a metrics text, matched by its name and labels as written. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describeKernel(
  'fleet: ConfigMap swap, read-only source, NODE_NAME, metrics listener on the node address, mount-bpffs',
  () => {
    let topo: Topology;
    let agent: AgentProcess | undefined;
    let reader: PinnedReader;
    let slot: number;
    const pinDir = testPinDir('fleet');
    const volume = new ConfigMapVolume();
    const state = mkdtempSync(join(tmpdir(), 'ps-fleet-state-'));
    let metricsUrl: string;

    const policyText = (rate: string) => `# ConfigMap policy
pinDir: ${pinDir}
api:
  tokenFile: ${state}/token
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
    const udpRatio = async (rate: number) => {
      const r = await runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5201, udp: true, bitrate: 2 * rate, length: 1400, seconds: 3 });
      return udpWireBitsPerSecond(r) / rate;
    };
    /** Wait until the kernel holds the rule at bps (read from the pins), at most 5 s. */
    const kernelRate = async (bps: bigint) => {
      const t0 = Date.now();
      while (reader.rule(slot).rate_bps !== bps) {
        if (Date.now() - t0 > 5000) throw new Error(`ps_rules[${slot}] rate ${reader.rule(slot).rate_bps}, not ${bps}, after 5 s:\n${agent!.tail()}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return Date.now() - t0;
    };
    const metrics = async () => {
      const r = await httpIn(topo.nsA, `${metricsUrl}/metrics`);
      expect(r.status, `GET /metrics from the other namespace: ${r.body}`).toBe(200);
      return r.body;
    };

    beforeAll(async () => {
      removePins(pinDir);
      topo = await createTopology('fleet');
      metricsUrl = `http://${topo.ipB}:${METRICS_PORT}`;
      volume.write({ 'policy.yaml': policyText('100mbit') });
      await volume.mountReadOnly();
      agent = AgentProcess.start(topo.nsB, volume.path('policy.yaml'), ['--metrics-listen', `${topo.ipB}:${METRICS_PORT}`], { NODE_NAME: NODE });
      await agent.applied();
      await agent.waitFor((r) => r.msg === 'metrics listener up (GET /metrics, /healthz, /readyz)');
      reader = new PinnedReader(pinDir);
      slot = reader.slotOf('udp/ingress')!;
      expect(slot, 'bucket udp/ingress is in the pinned ps_rules').toBeGreaterThan(0);
    });
    afterAll(async () => {
      await agent?.kill();
      reader?.close();
      await purgeAgent(topo?.nsB, pinDir);
      await volume.remove();
      rmSync(state, { recursive: true, force: true });
      await topo?.destroy();
    });

    it('serves /metrics, /healthz and /readyz on the node address to another namespace; the API stays on loopback', async () => {
      const text = await metrics();
      expect(text).toMatch(/^portshaper_packets_total\{rule="udp",port="5201",protocol="udp",direction="ingress",verdict="pass"\} \d+$/m);
      expect(sample(text, `portshaper_policy_info{hash="${hashOf(volume)}",source="${volume.path('policy.yaml')}"}`), 'policy_info of the ConfigMap file').toBe(1);
      expect((await httpIn(topo.nsA, `${metricsUrl}/healthz`)).status).toBe(200);
      const ready = await httpIn(topo.nsA, `${metricsUrl}/readyz`);
      expect(ready.status, ready.body).toBe(200);
      expect((await httpIn(topo.nsA, `${metricsUrl}/v1/rules`)).status, 'no API routes on the metrics listener').toBe(404);
      expect((await httpIn(topo.nsA, `http://${topo.ipB}:9180/v1/rules`)).status, 'the API is not reachable from another namespace').toBe(0);
      expect((await httpIn(topo.nsB, 'http://127.0.0.1:9180/v1/rules')).status, 'the API on loopback').toBe(200);
    });

    it('applies a ConfigMap update replayed exactly as kubelet does it (no event names policy.yaml)', async () => {
      const mark = agent!.logs.length;
      volume.write({ 'policy.yaml': policyText('50mbit') });
      const ms = await kernelRate(50_000_000n);
      console.info(`ConfigMap swap → new rate in ps_rules after ${ms} ms (200 ms debounce)`);
      const applied = await agent!.applied(mark);
      expect(applied.reason).toBe('file changed');
      expect(reader.slotOf('udp/ingress'), 'same slot: credit and counters carry on').toBe(slot);
      const ratio = await udpRatio(50 * MBIT);
      expect(ratio, 'UDP at 2x held to the new 50 Mbit/s').toBeGreaterThan(0.95);
      expect(ratio).toBeLessThan(1.05);
      // The all-rules totals come from the counter sample the agent takes every second.
      await new Promise((r) => setTimeout(r, 1500));
      const text = await metrics();
      expect(sample(text, 'portshaper_policy_reloads_total{result="applied"}')).toBe(1);
      const drops = sample(text, 'portshaper_packets_total{rule="udp",port="5201",protocol="udp",direction="ingress",verdict="drop"}');
      expect(drops, 'the rule dropped the excess').toBeGreaterThan(0);
      expect(sample(text, 'portshaper_all_rules_packets_total{direction="ingress",verdict="drop"}'), 'all-rules total = the one rule').toBe(drops);
      expect(sample(text, `portshaper_policy_info{hash="${hashOf(volume)}",source="${volume.path('policy.yaml')}"}`), 'policy_info follows the new hash').toBe(1);
    });

    it('refuses API writes on the read-only ConfigMap with 409 PS_POLICY_READONLY and leaves the kernel untouched', async () => {
      const token = readFileSync(join(state, 'token'), 'utf8').trim();
      const before = readFileSync(volume.path('policy.yaml'), 'utf8');
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' };
      const r = await httpIn(topo.nsB, 'http://127.0.0.1:9180/v1/rules/udp', { method: 'PATCH', headers, body: JSON.stringify({ rate: '10mbit' }) });
      expect(r.status, r.body).toBe(409);
      const body = JSON.parse(r.body) as { code: string; message: string };
      expect(body.code).toBe('PS_POLICY_READONLY');
      expect(body.message).toMatch(/managed elsewhere: it is a key of a mounted Kubernetes ConfigMap/);
      expect(body.message).toMatch(/kubectl -n portshaper edit configmap portshaper-policy/);
      expect(reader.rule(slot).rate_bps, 'kernel rate unchanged').toBe(50_000_000n);
      expect(readFileSync(volume.path('policy.yaml'), 'utf8'), 'file unchanged').toBe(before);
      expect(agent!.logs.some((l) => l.msg === 'policy applied' && String(l.reason).startsWith('API')), 'no API apply, not even one rolled back').toBe(false);
      // The mount itself is read-only to the kernel, whatever the layout.
      expect(readOnlyReason(join(volume.mountPoint, 'new.yaml'))).toBe(`its directory ${volume.mountPoint} is on a read-only file system`);
    });

    it(`NODE_NAME=${NODE}: node.${NODE}.yaml takes over when the ConfigMap gains it, and hands back when it goes`, async () => {
      let mark = agent!.logs.length;
      volume.write({ 'policy.yaml': policyText('50mbit'), [`node.${NODE}.yaml`]: policyText('20mbit'), 'node.other.yaml': policyText('5mbit') });
      await kernelRate(20_000_000n);
      const changed = await agent!.waitFor((r) => r.msg === 'policy source changed', 5000, mark);
      expect(changed).toMatchObject({ to: volume.path(`node.${NODE}.yaml`), kind: 'node' });
      const ratio = await udpRatio(20 * MBIT);
      expect(ratio, 'UDP held to the per-node 20 Mbit/s').toBeGreaterThan(0.95);
      expect(ratio).toBeLessThan(1.05);
      expect(sample(await metrics(), `portshaper_policy_info{hash="${hashOf(volume, `node.${NODE}.yaml`)}",source="${volume.path(`node.${NODE}.yaml`)}"}`)).toBe(1);

      mark = agent!.logs.length;
      volume.write({ 'policy.yaml': policyText('50mbit') });
      await kernelRate(50_000_000n);
      expect(await agent!.waitFor((r) => r.msg === 'policy source changed', 5000, mark)).toMatchObject({ to: volume.path('policy.yaml'), kind: 'file' });
    });

    it('a rejected ConfigMap keeps the running policy and shows in the metrics', async () => {
      const mark = agent!.logs.length;
      volume.write({ 'policy.yaml': policyText('10mbps') });
      const rejected = await agent!.waitFor((r) => r.msg.startsWith('policy rejected'), 5000, mark);
      expect(String(rejected.errors)).toMatch(/ambiguous unit "mbps"/);
      expect(reader.rule(slot).rate_bps).toBe(50_000_000n);
      const text = await metrics();
      expect(sample(text, 'portshaper_policy_reloads_total{result="rejected"}')).toBe(1);
      expect(sample(text, 'portshaper_policy_last_reload_successful')).toBe(0);
      // Another event in the directory: the same invalid file is not refused (and logged) again.
      writeFileSync(join(volume.source, 'unrelated'), 'x');
      await new Promise((r) => setTimeout(r, 800));
      expect(agent!.logs.slice(mark).filter((r) => r.msg.startsWith('policy rejected')), 'rejected once').toHaveLength(1);

      volume.write({ 'policy.yaml': policyText('40mbit') });
      await kernelRate(40_000_000n);
      expect(sample(await metrics(), 'portshaper_policy_last_reload_successful')).toBe(1);
    });

    it('a restarted agent with NODE_NAME starts on the node file and adopts the pins', async () => {
      volume.write({ 'policy.yaml': policyText('40mbit'), [`node.${NODE}.yaml`]: policyText('30mbit') });
      await kernelRate(30_000_000n);
      await agent!.kill();
      agent = AgentProcess.start(topo.nsB, volume.path('policy.yaml'), ['--metrics-listen', `${topo.ipB}:${METRICS_PORT}`], { NODE_NAME: NODE });
      const running = await agent.waitFor((r) => r.msg.startsWith('agent running'));
      expect(running).toMatchObject({ policy: volume.path(`node.${NODE}.yaml`), source: 'node', nodeName: NODE });
      expect(agent.logs.find((l) => l.msg.startsWith('adopted pinned maps'))?.adopted).toBe(true);
      expect(reader.slotOf('udp/ingress')).toBe(slot);
      expect(reader.rule(slot).rate_bps).toBe(30_000_000n);
    });

    it('still follows a plain policy file: an editor\'s atomic rename and an in-place write', async () => {
      await agent!.kill();
      const plain = new PolicyDir();
      try {
        plain.write(policyText('30mbit'));
        agent = AgentProcess.start(topo.nsB, plain.path);
        await agent.applied();
        // At once: this write may land before the agent watches the directory (it looks again then).
        const fileChanged = (r: { msg?: string; reason?: string }) => r.msg === 'policy applied' && r.reason === 'file changed';
        let mark = agent.logs.length;
        plain.write(policyText('25mbit')); // temp file + rename, as editors save
        await kernelRate(25_000_000n);
        // The kernel holds the new rate before the agent's log line has come through the pipe: wait for the line.
        await agent.waitFor(fileChanged, 5000, mark);
        mark = agent.logs.length;
        writeFileSync(plain.path, policyText('15mbit')); // truncate and write in place
        await kernelRate(15_000_000n);
        await agent.waitFor(fileChanged, 5000, mark);
      } finally {
        await agent.kill();
        plain.remove();
      }
    });

    it('portshaper mount-bpffs mounts a BPF filesystem where none is, and leaves one that is there', async () => {
      // In a private mount namespace: nothing reaches the host's mounts.
      const dir = mkdtempSync(join(tmpdir(), 'ps-bpffs-'));
      try {
        const script = [
          `mount -t tmpfs tmpfs ${dir}`,
          `${process.execPath} ${CLI} mount-bpffs ${dir}/bpf`,
          `stat -f -c %T ${dir}/bpf`,
          `${process.execPath} ${CLI} mount-bpffs ${dir}/bpf`,
        ].join(' && ');
        const r = await run('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { timeoutMs: 20_000 });
        expect(r.stdout.split('\n')).toEqual([`mounted a BPF filesystem on ${dir}/bpf`, 'bpf_fs', `${dir}/bpf is already on a BPF filesystem`, '']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
  { tools: ['nsenter', 'unshare', 'mount'] },
);

/** sha256 of a key's current text, as the agent hashes it. */
function hashOf(volume: ConfigMapVolume, key = 'policy.yaml'): string {
  return createHash('sha256').update(readFileSync(volume.path(key))).digest('hex');
}
