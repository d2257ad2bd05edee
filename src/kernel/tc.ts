/**
 * Attachment to tc clsact hooks: our filter, with a handle and priority of
 * its own, attached, replaced, queried and removed, never anyone else's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BPF_TC_EGRESS, BPF_TC_INGRESS, type TcFilterId, tcAttach, tcDetach, tcEnsureClsact, tcQuery } from './libbpf.js';
import { U32Map } from './maps.js';
import { MAP_SPECS, openPinnedMap } from './pins.js';
import { removeHtbRoot } from './qdisc.js';

/**
 * Our filter on every clsact hook: a fixed handle ("PS") and priority so we
 * find, replace and remove exactly our own filter and never anyone else's.
 * Priority 0x5053 runs before filters added with tc's default (49152) and
 * after tools that claim the first priorities.
 */
export const TC_FILTER: TcFilterId = { handle: 0x5053, priority: 0x5053 };

/** The hooks of one interface. */
export interface Hooks {
  ingress: boolean;
  egress: boolean;
}

/**
 * Attach our filter to the chosen hooks of an interface, creating the clsact
 * qdisc if absent; an existing filter of ours is replaced atomically (no
 * moment without enforcement).
 */
export function attachFilters(ifindex: number, ifname: string, programs: { ingress: number; egress: number }, hooks: Hooks): void {
  tcEnsureClsact(ifindex, ifname);
  if (hooks.ingress) tcAttach(ifindex, BPF_TC_INGRESS, TC_FILTER, programs.ingress, `tc ingress of ${ifname}`);
  if (hooks.egress) tcAttach(ifindex, BPF_TC_EGRESS, TC_FILTER, programs.egress, `tc egress of ${ifname}`);
  if (!hooks.ingress) tcDetach(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`);
  if (!hooks.egress) tcDetach(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`);
}

/** Remove our filters from an interface (only ours; the qdisc and others' filters stay). */
export function detachFilters(ifindex: number, ifname: string): void {
  tcDetach(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`);
  tcDetach(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`);
}

/** Program ids of our filters on an interface (0 where none is attached). */
export function attachedFilters(ifindex: number, ifname: string): { ingress: number; egress: number } {
  return {
    ingress: tcQuery(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`),
    egress: tcQuery(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`),
  };
}

/**
 * Remove our filters (and our HTB root qdisc, so the kernel's default comes
 * back) from every interface registered in the pinned maps and forget the
 * registrations, without loading a program. Returns the ifindexes detached.
 * Interfaces are looked up in the calling network namespace.
 */
export function detachPinned(pinDir: string): number[] {
  if (!existsSync(join(pinDir, 'ps_ifaces'))) return [];
  const ifaces = new U32Map(openPinnedMap(pinDir, 'ps_ifaces'), { name: 'ps_ifaces', ...MAP_SPECS.ps_ifaces, cpus: 1 });
  try {
    const { keys, count } = ifaces.readAll();
    const done: number[] = [];
    for (const ifindex of keys.subarray(0, count)) {
      tcDetach(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ifindex ${ifindex}`);
      tcDetach(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ifindex ${ifindex}`);
      removeHtbRoot(ifindex, `ifindex ${ifindex}`);
      ifaces.delete(ifindex);
      done.push(ifindex);
    }
    return done;
  } finally {
    ifaces.close();
  }
}
