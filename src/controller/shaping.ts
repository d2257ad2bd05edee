/**
 * The HTB side of shaping: which classes each interface's egress needs (pure),
 * and keeping a device's classes in line with that, in the order that never
 * lets the program point a packet at a class that is not there yet.
 *
 * Per device: our HTB root (handle 5053:, no default class, so traffic no
 * shaped rule claims takes HTB's direct queue, unshaped), one class per shaped
 * bucket (rate = ceil = the rule's rate; the class id is the bucket's
 * HTB_MAJOR:minor, which the program writes to skb->priority), each with a
 * bfifo leaf sized so that the program's horizon drops first.
 */
import type { DesiredBucket, DesiredInterface, DesiredState } from '../kernel/desired.js';
import {
  deleteHtbClass,
  ensureHtbRoot,
  formatHandle,
  htbClassParams,
  listHtbClasses,
  removeHtbRoot,
  rootQdisc,
  setHtbClass,
  type HtbClassSpec,
  type HtbClassState,
} from '../kernel/qdisc.js';
import { ForeignQdiscError } from '../errors.js';

/** The HTB classes of every interface, by interface name (empty: nothing shaped there). */
export function classPlan(desired: DesiredState, classes: Map<string, number>): Map<string, HtbClassSpec[]> {
  const byKey = new Map<string, DesiredBucket>(desired.buckets.map((b) => [b.key, b]));
  const out = new Map<string, HtbClassSpec[]>();
  for (const iface of desired.interfaces) out.set(iface.name, classesOf(iface, byKey, classes));
  return out;
}

function classesOf(iface: DesiredInterface, byKey: Map<string, DesiredBucket>, classes: Map<string, number>): HtbClassSpec[] {
  const specs: HtbClassSpec[] = [];
  for (const key of iface.shaped) {
    const bucket = byKey.get(key);
    const minor = classes.get(key);
    if (!bucket || minor === undefined) continue;
    specs.push({ minor, ...htbClassParams(bucket.rateBps, bucket.burstNs, bucket.horizonNs) });
  }
  return specs;
}

/**
 * Refuse, before anything changes, to shape on a device whose root qdisc
 * another tool configured (unless the policy says qdisc: replace).
 */
export function checkRoot(ifindex: number, ifname: string, wanted: HtbClassSpec[], replace: boolean): void {
  if (!wanted.length || replace) return;
  const root = rootQdisc(ifindex, ifname);
  if (root && !root.builtin && !root.ours) throw new ForeignQdiscError(ifname, root.kind, formatHandle(root.handle));
}

/**
 * Install our root if needed and create or change the wanted classes in place
 * (a changed rate keeps the class and its queue). Removes nothing: called
 * before the program's rules point at the classes.
 */
export function addClasses(ifindex: number, ifname: string, wanted: HtbClassSpec[], replace: boolean): number {
  if (!wanted.length) return 0;
  ensureHtbRoot(ifindex, ifname, { replace });
  const have = listHtbClasses(ifindex, ifname);
  let writes = 0;
  for (const spec of wanted) {
    const current = have.get(spec.minor);
    if (current && sameClass(current, spec)) continue;
    setHtbClass(ifindex, ifname, spec);
    writes++;
  }
  return writes;
}

/**
 * Delete the classes no rule points at any more, and our root when nothing is
 * shaped on the device (the kernel's default qdisc comes back). Called after
 * the program's rules stopped naming them.
 */
export function pruneClasses(ifindex: number, ifname: string, wanted: HtbClassSpec[]): number {
  if (!wanted.length) return removeHtbRoot(ifindex, ifname) ? 1 : 0;
  const keep = new Set(wanted.map((s) => s.minor));
  let removed = 0;
  for (const minor of listHtbClasses(ifindex, ifname).keys()) {
    if (keep.has(minor)) continue;
    deleteHtbClass(ifindex, ifname, minor);
    removed++;
  }
  return removed;
}

/** True when the kernel's class already has the spec (burst compared in HTB's 64 ns ticks). */
function sameClass(have: HtbClassState, want: HtbClassSpec): boolean {
  return (
    have.rateBytesPerSec === want.rateBytesPerSec &&
    have.ceilBytesPerSec === want.rateBytesPerSec &&
    Math.abs(have.bufferNs - want.burstNs) < 128 &&
    have.quantum === want.quantum &&
    have.leafKind === 'bfifo' &&
    have.leafLimitBytes === want.leafLimitBytes
  );
}
