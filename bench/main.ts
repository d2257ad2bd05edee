/**
 * `make bench`: portshaper (shaping and policing) against nftables limit, HTB
 * and TBF on a veth pair between two namespaces the benchmark creates (and a
 * router namespace between them for forwarded traffic). Sections run one after
 * another; each interleaves its repetitions and records machine load. The
 * report (Markdown, JSON, SVG charts) goes to bench/results/.
 *
 *   npx vite-node bench/main.ts -- [--quick] [--only accuracy,forwarded] [--reps N]
 *   npx vite-node bench/main.ts -- --only agent   (the agent process alone: RSS, start, API latencies)
 *   npx vite-node bench/main.ts -- --render bench/results/<run>.json
 */
import { readFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { parseArgs } from 'node:util';
import { DataPlane } from '../src/kernel/dataplane.js';
import { removePins } from '../src/kernel/pins.js';
import { missingPrerequisites, prerequisiteMessage } from '../test/helpers/tools.js';
import { createTopology } from '../test/helpers/net.js';
import { cleanupAll, onCleanup } from './lib/cleanup.js';
import type { BenchContext } from './lib/context.js';
import { cpuCount } from './lib/load.js';
import { writeReport, type BenchResults } from './lib/report.js';
import { log, runLog } from './lib/runner.js';
import { runAccuracy } from './sections/accuracy.js';
import { runAgent } from './sections/agent.js';
import { runControlPlane } from './sections/controlplane.js';
import { runFairness } from './sections/fairness.js';
import { runForwarded } from './sections/forwarded.js';
import { runOverhead } from './sections/overhead.js';
import { runPerPacket } from './sections/perpacket.js';

const SECTIONS = ['accuracy', 'fairness', 'forwarded', 'overhead', 'perpacket', 'controlplane', 'agent'] as const;
type SectionName = (typeof SECTIONS)[number];

function options(): { quick: boolean; reps: number; only: SectionName[]; render?: string } {
  const { values } = parseArgs({
    args: process.argv.slice(2).filter((a) => a !== '--'),
    options: { quick: { type: 'boolean', default: false }, reps: { type: 'string' }, only: { type: 'string' }, render: { type: 'string' } },
  });
  const quick = values.quick ?? false;
  const reps = values.reps !== undefined ? Number(values.reps) : quick ? 1 : 3;
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps must be a whole number >= 1, got ${values.reps}`);
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : [...SECTIONS];
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`unknown section "${s}"; sections: ${SECTIONS.join(', ')}`);
  return { quick, reps, only: only as SectionName[], render: values.render };
}

async function main(): Promise<void> {
  const opts = options();
  if (opts.render) {
    // Re-render the report of an earlier run (after a change to the report code) without measuring again.
    const written = writeReport(JSON.parse(readFileSync(opts.render, 'utf8')) as BenchResults);
    log(`report: ${written.join(', ')}`);
    return;
  }
  const missing = missingPrerequisites(['clang']);
  if (missing.length) throw new Error(prerequisiteMessage(missing));
  const started = new Date();
  log(`${opts.quick ? 'quick' : 'full'} run, ${opts.reps} repetition(s), sections: ${opts.only.join(', ')}`);

  const topo = await createTopology('bench');
  onCleanup('delete the benchmark namespaces', () => void topo.destroy());
  const pinDir = `/sys/fs/bpf/ps-bench-${process.pid}`;
  removePins(pinDir);
  const dp = DataPlane.open({ pinDir });
  onCleanup(`remove pins in ${pinDir}`, () => {
    dp.close();
    removePins(pinDir);
  });
  const ctx: BenchContext = { topo, dp, quick: opts.quick, reps: opts.reps };

  const results: BenchResults = {
    started: started.toISOString(),
    finished: '',
    host: hostname(),
    kernel: release(),
    cpus: cpuCount(),
    quick: opts.quick,
    reps: opts.reps,
    sectionErrors: {},
    runs: runLog,
  };
  const runners: Record<SectionName, () => Promise<void>> = {
    accuracy: async () => void (results.accuracy = await runAccuracy(ctx)),
    fairness: async () => void (results.fairness = await runFairness(ctx)),
    forwarded: async () => void (results.forwarded = await runForwarded(ctx)),
    overhead: async () => void (results.overhead = await runOverhead(ctx)),
    perpacket: async () => void (results.perpacket = await runPerPacket(ctx)),
    controlplane: async () => void (results.controlplane = await runControlPlane(ctx)),
    agent: async () => void (results.agent = await runAgent(ctx)),
  };
  for (const name of opts.only) {
    log(`section ${name}`);
    try {
      await runners[name]();
    } catch (err) {
      // One broken section must not cost the others' numbers; the report says what failed.
      results.sectionErrors[name] = (err as Error).stack ?? String(err);
      log(`section ${name} failed: ${(err as Error).message}`);
    }
  }
  results.finished = new Date().toISOString();
  const written = writeReport(results);
  log(`report: ${written.join(', ')}`);
}

main()
  .then(() => cleanupAll())
  .catch((err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    cleanupAll();
    process.exitCode = 1;
  });
