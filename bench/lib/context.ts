/**
 * What every section gets: the topology, the data plane opened in the
 * benchmark's own pin directory, the mode, and small portshaper helpers
 * shared by the sections (attach where, with which rules).
 */
import { applyDesired } from '../../src/kernel/apply.js';
import type { DataPlane } from '../../src/kernel/dataplane.js';
import type { Hooks } from '../../src/kernel/tc.js';
import type { DesiredState } from '../../src/kernel/desired.js';
import { inNetns } from '../../src/kernel/netns.js';
import type { WritePlan } from '../../src/kernel/reconcile.js';
import { run, type Topology } from '../../test/helpers/net.js';

/** Shared by every section. */
export interface BenchContext {
  topo: Topology;
  dp: DataPlane;
  quick: boolean;
  /** Repetitions of every interleaved case. */
  reps: number;
}

/** One end of the veth pair. */
export interface End {
  ns: string;
  ifindex: number;
  ifname: string;
}

/** The sender's end (namespace B: iperf3 server with -R) and the receiver's (A). */
export function ends(topo: Topology): { sender: End; receiver: End } {
  return {
    sender: { ns: topo.nsB, ifindex: topo.ifindexB, ifname: topo.ifB },
    receiver: { ns: topo.nsA, ifindex: topo.ifindexA, ifname: topo.ifA },
  };
}

const NOTHING: DesiredState = { buckets: [], ports: [], interfaces: [] };

/** Put exactly these rules in the maps (fresh buckets start full). */
export function setRules(dp: DataPlane, desired: DesiredState): WritePlan {
  return applyDesired(dp, desired);
}

/** Remove every rule (so that the next setRules starts with fresh buckets and counters). */
export function clearRules(dp: DataPlane): void {
  applyDesired(dp, NOTHING);
}

/** Register an interface with profile 0 and attach our program on the given hooks. */
export function attachAt(dp: DataPlane, end: End, hooks: Hooks): void {
  inNetns(end.ns, () => {
    dp.setInterface(end.ifindex, 0);
    dp.attach(end.ifindex, end.ifname, hooks);
  });
}

/** Detach our program from an interface and forget it. */
export function detachFrom(dp: DataPlane, end: End): void {
  inNetns(end.ns, () => dp.detach(end.ifindex, end.ifname));
  dp.removeInterface(end.ifindex);
}

/** Remove the clsact qdisc of an end if present (the "no program" baseline has no hook at all). */
export async function removeClsact(end: End): Promise<void> {
  await run('tc', ['-n', end.ns, 'qdisc', 'del', 'dev', end.ifname, 'clsact'], { allowFailure: true });
}
