/**
 * Per-packet run time of BPF programs by the kernel's own accounting
 * (kernel.bpf_stats_enabled: run_time_ns and run_cnt per program), and the
 * empty cls_bpf program that is the floor to compare against.
 */
import { ensureClsact, run, tcFilters } from '../../test/helpers/net.js';
import type { End } from './context.js';
import { tempFile, tempPath, withSysctl } from './host.js';

/** Cumulative run statistics of one program. */
export interface ProgStats {
  runTimeNs: number;
  runCnt: number;
}

/** Read run_time_ns / run_cnt of a program (`bpftool -j prog show id N`). */
export async function progStats(id: number): Promise<ProgStats> {
  const r = await run('bpftool', ['-j', 'prog', 'show', 'id', String(id)]);
  const p = JSON.parse(r.stdout) as { run_time_ns?: number; run_cnt?: number };
  return { runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0 };
}

/** ns per run between two readings (NaN when the program did not run). */
export function nsPerRun(before: ProgStats, after: ProgStats): number {
  const runs = after.runCnt - before.runCnt;
  return runs > 0 ? (after.runTimeNs - before.runTimeNs) / runs : NaN;
}

/** Run fn with kernel.bpf_stats_enabled=1, restoring the old value afterwards (also on failure or SIGINT). */
export function withBpfStats<T>(fn: () => Promise<T>): Promise<T> {
  return withSysctl('kernel.bpf_stats_enabled', '1', fn);
}

// Reads nothing and passes everything: what the hook itself and the stats
// accounting cost, the floor any classifier pays.
const EMPTY_PROGRAM_C = `
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

__attribute__((section("tc"), used))
int bench_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] __attribute__((section("license"), used)) = "GPL";
`;

let emptyObject: string | undefined;

/** Build the empty program with clang (once per run) and return the object's path. */
export async function emptyProgramObject(): Promise<string> {
  if (emptyObject) return emptyObject;
  const src = tempFile('empty.bpf.c', EMPTY_PROGRAM_C);
  const obj = tempPath('empty.bpf.o');
  await run('clang', ['-O2', '-g', '-target', 'bpf', '-I', `/usr/include/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`, '-c', src, '-o', obj], { timeoutMs: 60_000 });
  emptyObject = obj;
  return obj;
}

/** Priority of the empty program's filter (first on the hook). */
const EMPTY_PREF = 1;

/** Attach the empty program on an end's egress hook; returns its program id. */
export async function attachEmpty(end: End): Promise<number> {
  const obj = await emptyProgramObject();
  await ensureClsact(end.ns, end.ifname);
  await run('tc', ['-n', end.ns, 'filter', 'add', 'dev', end.ifname, 'egress', 'pref', String(EMPTY_PREF), 'handle', '1', 'bpf', 'da', 'obj', obj, 'sec', 'tc']);
  const f = (await tcFilters(end.ns, end.ifname, 'egress')).find((x) => x.pref === EMPTY_PREF);
  if (f?.progId === undefined) throw new Error(`empty program not found on ${end.ifname} egress after attaching it`);
  return f.progId;
}

/** Remove the empty program from an end's egress hook. */
export async function detachEmpty(end: End): Promise<void> {
  await run('tc', ['-n', end.ns, 'filter', 'del', 'dev', end.ifname, 'egress', 'pref', String(EMPTY_PREF)]);
}
