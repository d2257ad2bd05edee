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
  // Only shaped buckets have classes: a policing policy of 65,536 rules needs no index of its buckets.
  const shaped = desired.interfaces.some((i) => i.shaped.length > 0);
  const byKey = new Map<string, DesiredBucket>(shaped ? desired.buckets.filter((b) => b.mode === 'shape').map((b) => [b.key, b]) : []);
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
 * What our HTB classes on each device are, as our own writes left them: a
 * device's classes are dumped once (the first apply, adoption after a
 * restart, a device that came back), and later applies diff the wanted
 * classes against this instead (a dump cost ~20 ms per 1,000 classes, at
 * every apply). A minor mapped to null is a class of ours whose parameters
 * are not the wanted ones (seen in a dump). A root that is gone (deleted
 * behind our back) is noticed when ensureHtbRoot installs a new one, which
 * has no classes; any failed write forgets the device, so the next apply
 * dumps it again.
 */
export class HtbMirror {
  private devices = new Map<number, Map<number, HtbClassSpec | null>>();

  /**
   * Install our root if needed and create or change the wanted classes in
   * place (a changed rate keeps the class and its queue). Removes nothing:
   * called before the program's rules point at the classes. Returns the
   * classes written.
   */
  addClasses(ifindex: number, ifname: string, wanted: HtbClassSpec[], replace: boolean): number {
    if (!wanted.length) return 0;
    try {
      const { installed } = ensureHtbRoot(ifindex, ifname, { replace });
      let known = installed ? new Map<number, HtbClassSpec | null>() : this.devices.get(ifindex);
      if (!known) known = this.dump(ifindex, ifname, wanted);
      this.devices.set(ifindex, known);
      let writes = 0;
      for (const spec of wanted) {
        const current = known.get(spec.minor);
        if (current && sameSpec(current, spec)) continue;
        setHtbClass(ifindex, ifname, spec);
        known.set(spec.minor, spec);
        writes++;
      }
      return writes;
    } catch (err) {
      this.devices.delete(ifindex);
      throw err;
    }
  }

  /**
   * Delete the classes no rule points at any more, and our root when nothing
   * is shaped on the device (the kernel's default qdisc comes back). Called
   * after the program's rules stopped naming them. Returns the deletions.
   */
  pruneClasses(ifindex: number, ifname: string, wanted: HtbClassSpec[]): number {
    if (!wanted.length) {
      this.devices.delete(ifindex);
      return removeHtbRoot(ifindex, ifname) ? 1 : 0;
    }
    try {
      const known = this.devices.get(ifindex) ?? this.dump(ifindex, ifname, wanted);
      this.devices.set(ifindex, known);
      const keep = new Set(wanted.map((w) => w.minor));
      let removed = 0;
      for (const minor of [...known.keys()]) {
        if (keep.has(minor)) continue;
        deleteHtbClass(ifindex, ifname, minor);
        known.delete(minor);
        removed++;
      }
      return removed;
    } catch (err) {
      this.devices.delete(ifindex);
      throw err;
    }
  }

  /** Forget a device (detached, or gone): the next apply on its ifindex dumps its classes again. */
  forget(ifindex: number): void {
    this.devices.delete(ifindex);
  }

  /** The device's classes of ours, read from the kernel: the wanted spec where a class already has it. */
  private dump(ifindex: number, ifname: string, wanted: HtbClassSpec[]): Map<number, HtbClassSpec | null> {
    const byMinor = new Map(wanted.map((w) => [w.minor, w]));
    const known = new Map<number, HtbClassSpec | null>();
    for (const [minor, state] of listHtbClasses(ifindex, ifname)) {
      const want = byMinor.get(minor);
      known.set(minor, want && sameClass(state, want) ? want : null);
    }
    return known;
  }
}

/** Two specs of the same minor install the same class. */
function sameSpec(a: HtbClassSpec, b: HtbClassSpec): boolean {
  return a.rateBytesPerSec === b.rateBytesPerSec && a.burstNs === b.burstNs && a.quantum === b.quantum && a.leafLimitBytes === b.leafLimitBytes;
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
