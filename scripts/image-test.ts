/**
 * The run half of `make image-test` (scripts/image-test.sh builds the image
 * first and passes IMAGE): the portshaper container, as the DaemonSet runs
 * it, in a test network namespace with only CAP_BPF, CAP_PERFMON and
 * CAP_NET_ADMIN, the host's bpffs mounted in, the policy a read-only
 * directory, a read-only root file system:
 *  1. the init container's command (`mount-bpffs`) finds bpffs there;
 *  2. the agent holds a UDP port to its rate (iperf3 at 2x from the other namespace),
 *     and /metrics answers on the node address from the other namespace;
 *  3. the container is killed (SIGKILL): the limit still holds;
 *  4. a new container adopts the pins: same slot, counters carry on.
 * Prints measured numbers; exits non-zero on any failure; always removes its
 * container, pins and namespaces.
 *
 *   IMAGE=localhost/portshaper:image-test npx vite-node scripts/image-test.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePins } from '../src/kernel/pins.js';
import { CLI, PinnedReader } from '../test/helpers/agent.js';
import { createTopology, nsEnterArgv, run, type Topology } from '../test/helpers/net.js';
import { runIperf, udpWireBitsPerSecond } from '../test/helpers/traffic.js';

const IMAGE = process.env.IMAGE ?? 'localhost/portshaper:image-test';
const MBIT = 1_000_000;
const RATE = 50 * MBIT;
const METRICS_PORT = 9181;
const pinDir = `/sys/fs/bpf/ps-test-image-${process.pid}`;
const name = `ps-image-test-${process.pid}`;
/** CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39): the agent's effective set, exactly. */
const AGENT_CAPS = (1n << 12n) | (1n << 38n) | (1n << 39n);

const results: string[] = [];
const report = (line: string) => {
  results.push(line);
  console.log(`  ${line}`);
};

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`FAILED: ${what}`);
  report(`ok: ${what}`);
}

async function podman(args: string[], timeoutMs = 60_000): Promise<string> {
  return (await run('podman', args, { timeoutMs })).stdout.trim();
}

/** Start the agent container (the DaemonSet's settings, translated to podman). */
async function startAgent(topo: Topology, policyDir: string): Promise<void> {
  await podman([
    'run', '--detach', '--name', name,
    '--network', `ns:/run/netns/${topo.nsB}`,
    '--cap-drop=ALL', '--cap-add=BPF,PERFMON,NET_ADMIN',
    // The runtime's default seccomp profile can refuse bpf(): see deploy/kubernetes/daemonset.yaml.
    '--security-opt', 'seccomp=unconfined',
    '--read-only', '--tmpfs', '/var/lib/portshaper:mode=0700',
    '-v', '/sys/fs/bpf:/sys/fs/bpf',
    '-v', `${policyDir}:/etc/portshaper:ro`,
    IMAGE,
    'agent', '--policy', '/etc/portshaper/policy.yaml', '--log-json', '--stats-interval', '0',
    '--metrics-listen', `${topo.ipB}:${METRICS_PORT}`,
  ]);
}

/** The container's JSON log records. */
async function logs(): Promise<Record<string, unknown>[]> {
  const text = await podman(['logs', name]);
  return text.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

async function waitForLog(msg: (m: string) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const t0 = Date.now();
  for (;;) {
    const found = (await logs()).find((r) => msg(String(r.msg)));
    if (found) return found;
    if (Date.now() - t0 > timeoutMs) throw new Error(`container log: nothing matched within ${timeoutMs} ms:\n${await podman(['logs', '--tail', '20', name]).catch(() => '')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * UDP at twice the rate for 3 s: held when at most 5% over the rate gets
 * through and the kernel dropped the excess. At least 80% must get through:
 * the tighter bounds (±5%) are the kernel tests'; this machine's two cores
 * are shared with other test runs, and a starved iperf3 sends less.
 */
async function checkHeld(topo: Topology, reader: PinnedReader, slot: number, what: string): Promise<void> {
  const before = reader.counts(slot).drop_pkts;
  const r = await runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5201, udp: true, bitrate: 2 * RATE, length: 1400, seconds: 3 });
  const ratio = udpWireBitsPerSecond(r) / RATE;
  const drops = reader.counts(slot).drop_pkts - before;
  check(ratio <= 1.05 && ratio >= 0.8 && drops > 0n, `${what}: UDP at 2x held to ${((ratio * RATE) / MBIT).toFixed(1)} Mbit/s (ratio ${ratio.toFixed(3)}), ${drops} packets dropped`);
}

/** VmRSS of the container's main process, in MiB. */
async function rssMiB(): Promise<number> {
  const pid = await podman(['inspect', '--format', '{{.State.Pid}}', name]);
  const { readFileSync } = await import('node:fs');
  const kib = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return Math.round(kib / 102.4) / 10;
}

async function main(): Promise<void> {
  const topo = await createTopology('image');
  const policyDir = mkdtempSync(join(tmpdir(), 'ps-image-policy-'));
  let reader: PinnedReader | undefined;
  try {
    removePins(pinDir);
    writeFileSync(join(policyDir, 'policy.yaml'), `# make image-test policy
pinDir: ${pinDir}
interfaces:
  - name: ${topo.ifB}
rules:
  - name: udp
    port: 5201
    protocol: udp
    direction: ingress
    rate: ${RATE / MBIT}mbit
    burst: 10ms
`);

    console.log('1. init container command: portshaper mount-bpffs (CAP_SYS_ADMIN only, Bidirectional-style rshared bind)');
    const mounted = await podman(['run', '--rm', '--network', 'none', '--cap-drop=ALL', '--cap-add=SYS_ADMIN', '--security-opt', 'seccomp=unconfined', '-v', '/sys/fs/bpf:/sys/fs/bpf:rshared', IMAGE, 'mount-bpffs']);
    check(mounted === '/sys/fs/bpf is already on a BPF filesystem', `mount-bpffs: "${mounted}"`);

    console.log(`2. agent container in ${topo.nsB}, caps BPF+PERFMON+NET_ADMIN, read-only root`);
    let t0 = Date.now();
    await startAgent(topo, policyDir);
    const applied = await waitForLog((m) => m === 'policy applied');
    report(`container start → policy applied: ${Date.now() - t0} ms (${String(applied.ms)} ms apply)`);
    const created = await waitForLog((m) => m.startsWith('created pinned maps') || m.startsWith('adopted pinned maps'));
    check(created.adopted === false, 'first container created the pins');
    const status = await podman(['exec', name, 'cat', '/proc/1/status']);
    const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? '0'}`);
    check(capEff === AGENT_CAPS, `agent's effective capabilities are exactly BPF, PERFMON, NET_ADMIN (CapEff ${capEff.toString(16).padStart(16, '0')})`);
    reader = new PinnedReader(pinDir);
    const slot = reader.slotOf('udp/ingress');
    check(slot !== undefined && reader.rule(slot).rate_bps === BigInt(RATE), `pins on the host's bpffs hold udp/ingress at ${RATE / MBIT} Mbit/s (slot ${slot})`);
    await checkHeld(topo, reader, slot!, 'agent running');
    const metricsArgv = nsEnterArgv(topo.nsA, [process.execPath, '-e', `fetch('http://${topo.ipB}:${METRICS_PORT}/metrics').then(r => r.text()).then(t => process.stdout.write(t))`]);
    const metrics = (await run(metricsArgv[0]!, metricsArgv.slice(1), { timeoutMs: 10_000 })).stdout;
    check(/^portshaper_policy_info\{hash="[0-9a-f]{64}",source="\/etc\/portshaper\/policy.yaml"\} 1$/m.test(metrics), `/metrics from the other namespace (${topo.nsA} → ${topo.ipB}:${METRICS_PORT}) has portshaper_policy_info`);
    report(`agent RSS in the container: ${await rssMiB()} MiB`);

    console.log('3. kill -9 the container: the limit stays');
    await podman(['kill', '--signal', 'KILL', name]);
    await podman(['rm', '--force', name]);
    await checkHeld(topo, reader, slot!, 'no container');
    const noAgent = reader.counts(slot!);

    console.log('4. a new container adopts the pins');
    t0 = Date.now();
    await startAgent(topo, policyDir);
    const adopted = await waitForLog((m) => m.startsWith('adopted pinned maps'));
    await waitForLog((m) => m === 'policy applied');
    report(`container start → policy applied (adopting): ${Date.now() - t0} ms`);
    check(adopted.adopted === true, 'the new container adopted the pinned maps');
    check(reader.slotOf('udp/ingress') === slot, 'same slot after adoption (credit and counters carry on)');
    const adoptedCounts = reader.counts(slot!);
    check(adoptedCounts.pass_pkts >= noAgent.pass_pkts && adoptedCounts.drop_pkts >= noAgent.drop_pkts, 'counters not reset');
    await checkHeld(topo, reader, slot!, 'after adoption');
    report(`agent RSS in the container after adoption and traffic: ${await rssMiB()} MiB`);
  } finally {
    reader?.close();
    await run('podman', ['rm', '--force', '--time', '0', name], { allowFailure: true });
    const detach = nsEnterArgv(topo.nsB, [process.execPath, CLI, 'detach', '--pin-dir', pinDir, '--purge']);
    await run(detach[0]!, detach.slice(1), { allowFailure: true });
    removePins(pinDir);
    rmSync(policyDir, { recursive: true, force: true });
    await topo.destroy();
  }
  if (process.env.IMAGE_BUILD_SECONDS) report(`image build: ${process.env.IMAGE_BUILD_SECONDS} s; image size: ${Math.round(Number(process.env.IMAGE_SIZE_BYTES) / 1024 / 1024)} MiB`);
  console.log(`\nimage-test: ${results.filter((r) => r.startsWith('ok:')).length} passed, 0 failed`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  console.log(`\nimage-test: ${results.filter((r) => r.startsWith('ok:')).length} passed, 1 failed`);
  process.exitCode = 1;
});
