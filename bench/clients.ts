/**
 * Per-client path cost (issue 12): the program's run time per packet, by the
 * kernel's own BPF_PROG_TEST_RUN clock, for a rule with per-client limits at
 * 1, 1,000 and 100,000 active clients, against the same rule without
 * per-client limits (same frames, same addresses) measured in the same run,
 * interleaved. Every frame comes from another client, so the LRU table's
 * lookups miss the CPU caches as they would with that many real clients.
 *
 *   npx vite-node bench/clients.ts -- [--quick]
 *
 * Writes bench/results/latest-clients.md. What it does not measure: an
 * nftables meter doing the same job (it needs real traffic from 100,000
 * source addresses, which this machine cannot generate in a bench run).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyDesired } from '../src/kernel/apply.js';
import { DataPlane } from '../src/kernel/dataplane.js';
import { removePins } from '../src/kernel/pins.js';
import type { DesiredClientLimit } from '../src/kernel/desired.js';
import { desiredFrom, type TestRule } from '../test/helpers/dataplane.js';
import { buildFrame, skbContext } from '../test/helpers/frames.js';
import { RESULTS_DIR } from './lib/report.js';

const quick = process.argv.includes('--quick');
const COUNTS = [1, 1000, 100_000];
const ROUNDS = quick ? 2 : 5;
/** Far above anything measured: buckets are charged, never empty. */
const NEVER = { rateBps: 80e9, burstNs: 10_000_000 };
const client: DesiredClientLimit = {
  rateBps: 80e9,
  burstNs: 10_000_000,
  ecnNs: 0,
  pktCostNs: 0,
  pktBurstNs: 0,
  synCostNs: 0,
  synBurstNs: 0,
  ipv6Prefix: 64,
};
const LO = 1;

/** Median of a list. */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Mean ns per run over every frame, each run once. */
function meanRun(dp: DataPlane, frames: Buffer[], ctx: Buffer): number {
  let total = 0;
  for (const f of frames) total += dp.testRun('ingress', f, ctx, 1).durationNs;
  return total / frames.length;
}

function main(): void {
  const pinDir = `/sys/fs/bpf/ps-bench-clients-${process.pid}`;
  removePins(pinDir);
  const dp = DataPlane.open({ pinDir, clientTable: 131_072 });
  try {
    dp.setInterface(LO, 0);
    const rules: TestRule[] = [
      { name: 'plain', port: 7001, protocol: 'udp', direction: 'ingress', ...NEVER },
      { name: 'perclient', port: 7002, protocol: 'udp', direction: 'ingress', ...NEVER, client },
    ];
    applyDesired(dp, desiredFrom(rules));
    const ctx = skbContext({ ifindex: LO });
    const lines = [
      '# Per-client path cost',
      '',
      `${new Date().toISOString()}, ${quick ? 'quick' : 'full'} run: median of ${ROUNDS} rounds, each frame once per round (BPF_PROG_TEST_RUN run time).`,
      '',
      '| active clients | rule without per-client limits (ns/packet) | with per-client limits (ns/packet) | per-client path (ns) |',
      '|---|---|---|---|',
    ];
    for (const n of COUNTS) {
      const frames = (port: number) => Array.from({ length: n }, (_, i) => buildFrame({ ip: 4, l4: 'udp', dport: port, src: i + 1, payload: 100 }));
      const plain = frames(7001);
      const withClients = frames(7002);
      meanRun(dp, withClients, ctx); // insert every client first
      const a: number[] = [];
      const b: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        a.push(meanRun(dp, plain, ctx));
        b.push(meanRun(dp, withClients, ctx));
      }
      const row = `| ${n.toLocaleString('en')} | ${median(a).toFixed(0)} | ${median(b).toFixed(0)} | +${(median(b) - median(a)).toFixed(0)} |`;
      console.log(row);
      lines.push(row);
    }
    lines.push('', 'Not measured: an nftables meter doing the same job (needs real traffic from that many addresses).', '');
    const out = join(RESULTS_DIR, quick ? 'latest-clients-quick.md' : 'latest-clients.md');
    writeFileSync(out, lines.join('\n'));
    console.log(`report: ${out}`);
  } finally {
    dp.close();
    removePins(pinDir);
  }
}

main();
