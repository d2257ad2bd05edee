/**
 * `make demo`: portshaper live, in under a minute, on a veth pair between two
 * namespaces it creates (and removes). The agent enforces a demo policy; UDP
 * flows run to a limited and an unlimited port; halfway through, the limit is
 * lowered through the REST API (the `portshaper set` client). Every second
 * the demo prints configured vs measured rate for both ports, read from the
 * pinned maps.
 *
 *   npx vite-node scripts/demo.ts
 */
import { join } from 'node:path';
import { AgentProcess, CLI, PinnedReader, PolicyDir } from '../test/helpers/agent.js';
import { createTopology, nsEnterArgv, run } from '../test/helpers/net.js';
import { runIperf } from '../test/helpers/traffic.js';
import { removePins } from '../src/kernel/pins.js';

const SECONDS = 20;
const CHANGE_AT = 10;
const MBIT = 1_000_000;
const pinDir = `/sys/fs/bpf/ps-demo-${process.pid}`;

const mbit = (bps: number) => `${(bps / MBIT).toFixed(1).padStart(6)} Mbit/s`;

async function main(): Promise<void> {
  const topo = await createTopology('demo');
  const policy = new PolicyDir();
  let agent: AgentProcess | undefined;
  try {
    policy.write(`# portshaper demo policy (written by scripts/demo.ts)
pinDir: ${pinDir}
interfaces:
  - name: ${topo.ifB}
api:
  tokenFile: ${join(policy.dir, 'token')}
rules:
  - name: limited         # the service we hold to a rate
    port: 5201
    protocol: udp
    direction: ingress
    rate: 50mbit
    burst: 10ms
  - name: unlimited       # counted, never dropped
    port: 5202
    protocol: udp
    direction: ingress
    rate: unlimited
`);
    console.log(`namespaces ${topo.nsA} → ${topo.nsB} (veth ${topo.ifA} → ${topo.ifB}); starting the agent in ${topo.nsB}…`);
    agent = AgentProcess.start(topo.nsB, policy.path);
    await agent.waitFor((r) => r.msg === 'API listening' || r.msg.startsWith('agent running'), 20_000);
    const reader = new PinnedReader(pinDir);
    const limited = reader.slotOf('limited/ingress')!;
    const unlimited = reader.slotOf('unlimited/ingress')!;

    console.log(`UDP offered: 100 Mbit/s to port 5201 (limited), 30 Mbit/s to port 5202 (unlimited); at ${CHANGE_AT}s the limit drops to 20mbit via the API\n`);
    console.log('  t   port 5201 configured   port 5201 measured   port 5202 measured   5201 drops/s');
    const traffic = Promise.all([
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5201, udp: true, bitrate: 100 * MBIT, length: 1400, seconds: SECONDS }),
      runIperf({ nsClient: topo.nsA, nsServer: topo.nsB, serverIp: topo.ipB, port: 5202, udp: true, bitrate: 30 * MBIT, length: 1400, seconds: SECONDS }),
    ]);
    let prev = { l: reader.counts(limited), u: reader.counts(unlimited), at: performance.now() };
    for (let t = 1; t <= SECONDS; t++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (t === CHANGE_AT) {
        const argv = nsEnterArgv(topo.nsB, [process.execPath, CLI, 'set', 'limited', '--rate', '20mbit', '--policy', policy.path]);
        const r = await run(argv[0]!, argv.slice(1));
        console.log(`      → portshaper set limited --rate 20mbit: ${r.stdout.trim().split('\n')[0]}`);
      }
      const now = { l: reader.counts(limited), u: reader.counts(unlimited), at: performance.now() };
      // Divide by the time that really passed (the API call stretches a tick).
      const secs = (now.at - prev.at) / 1000;
      const configured = Number(reader.rule(limited).rate_bps);
      console.log(
        `${String(t).padStart(3)}s ${mbit(configured).padStart(20)} ${mbit((Number(now.l.pass_bytes - prev.l.pass_bytes) * 8) / secs).padStart(20)} ${mbit((Number(now.u.pass_bytes - prev.u.pass_bytes) * 8) / secs).padStart(20)} ${String(Math.round(Number(now.l.drop_pkts - prev.l.drop_pkts) / secs)).padStart(14)}`,
      );
      prev = now;
    }
    await traffic;
    reader.close();
    console.log('\nmeasured = wire bytes passed per second (Ethernet header included), from the pinned ps_counters map.');
  } finally {
    await agent?.kill();
    await run(process.execPath, [CLI, 'detach', '--pin-dir', pinDir, '--purge'], { allowFailure: true });
    removePins(pinDir);
    policy.remove();
    await topo.destroy();
    console.log('cleaned up: agent stopped, namespaces and pins removed.');
  }
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
