/**
 * Reconcile: compare the desired state with a snapshot of the kernel's maps
 * and compute the smallest set of writes. Pure (no kernel access), so it is
 * unit-tested exhaustively; src/kernel/apply.ts performs the writes.
 *
 * Buckets keep their slot across reloads and agent restarts: each slot's
 * ps_rule carries a 64-bit hash of the bucket key, so a new agent finds the
 * slot (with its credit and counters) of every bucket it still wants.
 */
import { CapacityError, CODE, PortshaperError } from '../errors.js';
import type { DesiredBucket, DesiredClientLimit, DesiredPortRange, DesiredState } from './desired.js';
import { PS, portIndex, type PsClientCfg, type PsRule } from './layout.js';
import { classId, PS_HTB_MAJOR } from './qdisc.js';

/** What the kernel holds, as far as reconciling needs it. */
export interface KernelSnapshot {
  /** In-use rule slots: slot → configuration. */
  rules: Map<number, PsRule>;
  /** ps_ports: the slot id (0 = no rule) of index i is at ports[i * portStride]. */
  ports: Uint32Array;
  /** 1 for a compact copy; 2 for the kernel's mmap view (array elements are 8-byte aligned). */
  portStride: number;
  /** Slots available (PS_MAX_SLOTS unless the map was sized otherwise). */
  maxSlots: number;
  /** ps_client_cfg: per-client limits by slot. */
  clientCfg: Map<number, PsClientCfg>;
}

/** One ps_rules write. Fresh slots get their bucket and counters zeroed first. */
export interface RuleWrite {
  slot: number;
  rule: PsRule;
  fresh: boolean;
}

/** The writes that turn the snapshot into the desired state, in a safe order. */
export interface WritePlan {
  /** 1. Slots that are new: zero bucket state and counters, then write the rule. Changed rules: rewrite in place. */
  rules: RuleWrite[];
  /** 2. ps_ports entries to change (index → slot). */
  portIndexes: Uint32Array;
  portSlots: Uint32Array;
  /** 3. Slots no port points to any more: mark them unused. */
  release: number[];
  /** Final bucket key → slot assignment. */
  slots: Map<string, number>;
  /** Shaped bucket key → HTB class minor (kept across reloads and restarts through ps_rule.classid). */
  classes: Map<string, number>;
  /** 0. Per-client limits to write, before the rules that point at them. */
  clientCfg: { slot: number; cfg: PsClientCfg }[];
  /** 4. Per-client limits no rule uses any more: deleted after the rules stopped naming them. */
  clientCfgRemove: number[];
}

const DIR = { ingress: PS.PS_DIR_INGRESS, egress: PS.PS_DIR_EGRESS } as const;
const PROTO = { tcp: PS.PS_PROTO_TCP, udp: PS.PS_PROTO_UDP } as const;
const SIDE = { local: PS.PS_SIDE_LOCAL, remote: PS.PS_SIDE_REMOTE } as const;

/** 64-bit hash of a bucket key (two independent 32-bit FNV-1a/murmur-mixed lanes). */
export function bucketKeyHash(key: string): bigint {
  let h1 = 0x811c9dc5;
  let h2 = 0x9e3779b1;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x85ebca6b);
    h2 ^= h2 >>> 13;
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 0x7feb352d);
  h1 ^= h1 >>> 15;
  h2 = Math.imul(h2 ^ (h2 >>> 16), 0xc2b2ae35);
  h2 ^= h2 >>> 16;
  return (BigInt(h2 >>> 0) << 32n) | BigInt(h1 >>> 0);
}

const MODE = { police: PS.PS_MODE_POLICE, monitor: PS.PS_MODE_MONITOR, shape: PS.PS_MODE_SHAPE } as const;

/** Highest class minor (0 is the qdisc itself; 0xFFFF is left alone; 0x5053 is skipped, see assignClasses). */
export const MAX_CLASS_MINOR = 0xfffe;

/** The class minor a ps_rule names (0 when it does not shape or names another qdisc's class). */
export function classMinorOf(rule: PsRule): number {
  return rule.mode === PS.PS_MODE_SHAPE && rule.classid >>> 16 === PS_HTB_MAJOR ? rule.classid & 0xffff : 0;
}

/** The ps_rule value a desired bucket should have; classMinor is its HTB class when it shapes. */
export function ruleValue(b: DesiredBucket, keyHash: bigint, classMinor = 0): PsRule {
  return {
    rate_bps: BigInt(b.rateBps),
    burst_ns: BigInt(b.burstNs),
    key_hash: keyHash,
    ecn_ns: BigInt(b.ecnNs),
    horizon_ns: BigInt(b.horizonNs),
    pkt_cost_ns: BigInt(b.pktCostNs),
    pkt_burst_ns: BigInt(b.pktBurstNs),
    syn_cost_ns: BigInt(b.synCostNs),
    syn_burst_ns: BigInt(b.synBurstNs),
    mode: MODE[b.mode],
    flags: PS.PS_RULE_IN_USE | (b.client ? PS.PS_RULE_CLIENTS : 0),
    classid: b.mode === 'shape' ? classId(classMinor) : 0,
    pad: 0,
  };
}

/** The ps_client_cfg value of a bucket's per-client limits. */
export function clientCfgValue(b: DesiredBucket): PsClientCfg | undefined {
  const c = b.client;
  if (!c) return undefined;
  return {
    rate_bps: BigInt(c.rateBps),
    burst_ns: BigInt(c.burstNs),
    ecn_ns: BigInt(c.ecnNs),
    pkt_cost_ns: BigInt(c.pktCostNs),
    pkt_burst_ns: BigInt(c.pktBurstNs),
    syn_cost_ns: BigInt(c.synCostNs),
    syn_burst_ns: BigInt(c.synBurstNs),
    prefix6: c.ipv6Prefix,
    pad: 0,
  };
}

function sameFields<T extends object>(a: T, b: T): boolean {
  for (const k of Object.keys(a) as (keyof T)[]) if (a[k] !== b[k]) return false;
  return true;
}

/** Build the ps_ports image the desired state implies, given the slot of each bucket key. */
export function portTable(desired: DesiredState, slots: Map<string, number>): Uint32Array {
  const table = new Uint32Array(PS.PS_PORT_TABLE_SIZE);
  for (const r of desired.ports) {
    const base = portIndex(r.profile, DIR[r.direction], PROTO[r.protocol], SIDE[r.side], 0);
    const shared = r.perPort ? 0 : slotOf(slots, r.bucket);
    for (let p = r.from; p <= r.to; p++) {
      table[base | p] = r.perPort ? slotOf(slots, `${r.bucket}/${p}`) : shared;
    }
  }
  return table;
}

function slotOf(slots: Map<string, number>, key: string): number {
  const slot = slots.get(key);
  if (slot === undefined) {
    throw new PortshaperError(CODE.PS_PLAN_INCONSISTENT, `port range refers to bucket "${key}" that the plan does not define`);
  }
  return slot;
}

/** Compute the writes from snapshot to desired. */
export function reconcile(desired: DesiredState, snapshot: KernelSnapshot): WritePlan {
  const bySlotHash = new Map<bigint, number>();
  for (const [slot, rule] of snapshot.rules) bySlotHash.set(rule.key_hash, slot);

  const slots = new Map<string, number>();
  const kept = new Set<number>();
  const fresh: { bucket: DesiredBucket; hash: bigint }[] = [];
  const seenHash = new Map<bigint, string>();
  // Slot found for each desired bucket (undefined: fresh), in desired order.
  const found: (number | undefined)[] = [];

  for (const bucket of desired.buckets) {
    const hash = bucketKeyHash(bucket.key);
    const clash = seenHash.get(hash);
    if (clash !== undefined) {
      throw new PortshaperError(
        CODE.PS_PLAN_INCONSISTENT,
        clash === bucket.key ? `bucket "${bucket.key}" is defined twice` : `bucket keys "${clash}" and "${bucket.key}" collide`,
        { hint: 'rename one of the rules' },
      );
    }
    seenHash.set(hash, bucket.key);
    const slot = bySlotHash.get(hash);
    found.push(slot);
    if (slot === undefined) {
      fresh.push({ bucket, hash });
      continue;
    }
    slots.set(bucket.key, slot);
    kept.add(slot);
  }

  const classes = assignClasses(desired.buckets, found, snapshot);
  const rules: RuleWrite[] = [];
  desired.buckets.forEach((bucket, i) => {
    const slot = found[i];
    if (slot === undefined) return;
    const want = ruleValue(bucket, bucketKeyHash(bucket.key), classes.get(bucket.key));
    if (!sameFields(want, snapshot.rules.get(slot)!)) rules.push({ slot, rule: want, fresh: false });
  });

  // New buckets take the lowest free slots: reading counters scans [1, max slot].
  let next = 1;
  const inUse = new Set(snapshot.rules.keys());
  for (const { bucket, hash } of fresh) {
    while (inUse.has(next)) next++;
    if (next >= snapshot.maxSlots) {
      throw new CapacityError(
        `the policy needs more than ${snapshot.maxSlots - 1} buckets`,
        'use shared buckets for port ranges ("buckets: shared") or fewer rules',
      );
    }
    inUse.add(next);
    slots.set(bucket.key, next);
    rules.push({ slot: next, rule: ruleValue(bucket, hash, classes.get(bucket.key)), fresh: true });
  }

  const release = [...snapshot.rules.keys()].filter((slot) => !kept.has(slot)).sort((a, b) => a - b);

  const want = portTable(desired, slots);
  const { ports: have, portStride: stride } = snapshot;
  const indexes: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < want.length; i++) {
    if (want[i] !== have[i * stride]) {
      indexes.push(i);
      values.push(want[i]!);
    }
  }
  const portIndexes = Uint32Array.from(indexes);
  const portSlots = Uint32Array.from(values);
  // A slot released while a port still points at it would count traffic for
  // a dead rule; the port writes above clear those pointers first.
  // Per-client limits: written when new or changed, removed when no bucket has them.
  const clientCfg: { slot: number; cfg: PsClientCfg }[] = [];
  const withClients = new Set<number>();
  for (const bucket of desired.buckets) {
    const cfg = clientCfgValue(bucket);
    const slot = slots.get(bucket.key)!;
    if (!cfg) continue;
    withClients.add(slot);
    const have = snapshot.clientCfg.get(slot);
    if (!have || !sameFields(have, cfg)) clientCfg.push({ slot, cfg });
  }
  const clientCfgRemove = [...snapshot.clientCfg.keys()].filter((slot) => !withClients.has(slot)).sort((a, b) => a - b);
  return { rules, portIndexes, portSlots, release, slots, classes, clientCfg, clientCfgRemove };
}

/**
 * HTB class minors of the shaped buckets: a bucket that shaped before keeps
 * its class (so its queue and the class stay in place across reloads and
 * restarts); the others take the lowest free minors.
 */
function assignClasses(buckets: DesiredBucket[], found: (number | undefined)[], snapshot: KernelSnapshot): Map<string, number> {
  const classes = new Map<string, number>();
  const used = new Set<number>();
  const waiting: string[] = [];
  buckets.forEach((bucket, i) => {
    if (bucket.mode !== 'shape') return;
    const slot = found[i];
    const minor = slot === undefined ? 0 : classMinorOf(snapshot.rules.get(slot)!);
    if (minor !== 0 && !used.has(minor)) {
      classes.set(bucket.key, minor);
      used.add(minor);
    } else {
      waiting.push(bucket.key);
    }
  });
  let next = 1;
  for (const key of waiting) {
    // Minor 0x5053 is skipped: its leaf qdisc (handle minor:) would take the root's handle 5053:.
    while (used.has(next) || next === PS_HTB_MAJOR) next++;
    if (next > MAX_CLASS_MINOR) {
      throw new CapacityError(
        `the policy needs more than ${MAX_CLASS_MINOR} HTB classes`,
        'shape fewer buckets: use buckets: shared for large ranges, or mode: police for some rules',
      );
    }
    used.add(next);
    classes.set(key, next);
  }
  return classes;
}

/** True when the plan changes nothing. */
export function isNoop(plan: WritePlan): boolean {
  return (
    plan.rules.length === 0 &&
    plan.portIndexes.length === 0 &&
    plan.release.length === 0 &&
    plan.clientCfg.length === 0 &&
    plan.clientCfgRemove.length === 0
  );
}

/**
 * What the kernel's ps_rules and ps_ports hold after a plan was applied,
 * kept in memory so that the next change is diffed against the previous plan
 * instead of read back: a change then costs one pass over the desired
 * buckets and ranges plus what changed, never a scan of the PS_MAX_SLOTS
 * rules or the 2M-entry port table. Valid only while nothing else writes
 * those maps (one agent per host); the agent drops it when an apply fails.
 */
export interface KernelMirror {
  /** Bucket key → the desired bucket in the kernel. */
  buckets: Map<string, DesiredBucket>;
  /** rangeKey → the port range in the kernel. */
  ranges: Map<string, DesiredPortRange>;
  /** Bucket key → slot. */
  slots: Map<string, number>;
  /** Shaped bucket key → HTB class minor. */
  classes: Map<string, number>;
  /** Key hash of every bucket in the kernel → its key (the hash is what a restart adopts slots by). */
  hashes: Map<bigint, string>;
  maxSlots: number;
  /** The desired state these maps describe: a next state that shares its port ranges is diffed bucket by bucket. */
  desired?: DesiredState;
}

/** Identity of a port range and of the bucket it leads to: equal keys mean equal ps_ports entries. */
function rangeKey(r: DesiredPortRange): string {
  return `${r.profile}/${r.direction}/${r.protocol}/${r.side}/${r.from}/${r.to}/${r.perPort ? 'per-port' : 'shared'}/${r.bucket}`;
}

/** Same ps_rule value, given the same slot and class. */
function sameBucket(a: DesiredBucket, b: DesiredBucket): boolean {
  return (
    a.rateBps === b.rateBps &&
    a.burstNs === b.burstNs &&
    a.mode === b.mode &&
    a.ecnNs === b.ecnNs &&
    a.horizonNs === b.horizonNs &&
    a.pktCostNs === b.pktCostNs &&
    a.pktBurstNs === b.pktBurstNs &&
    a.synCostNs === b.synCostNs &&
    a.synBurstNs === b.synBurstNs &&
    (a.client === undefined) === (b.client === undefined)
  );
}

/** Same ps_client_cfg value (both absent counts as the same). */
function sameClient(a: DesiredClientLimit | undefined, b: DesiredClientLimit | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameFields(a, b);
}

/** The mirror of the kernel once a plan computed by reconcile() for `desired` has been applied. */
export function mirrorOf(desired: DesiredState, plan: WritePlan, maxSlots: number): KernelMirror {
  return {
    buckets: new Map(desired.buckets.map((b) => [b.key, b])),
    ranges: new Map(desired.ports.map((r) => [rangeKey(r), r])),
    slots: plan.slots,
    classes: plan.classes,
    hashes: new Map(desired.buckets.map((b) => [bucketKeyHash(b.key), b.key])),
    maxSlots,
    desired,
  };
}

/**
 * The writes from a mirrored kernel state to `desired`, and the mirror once
 * they are applied: the plan reconcile() computes against a snapshot of that
 * state (same slots, classes and order), from the difference of the plans.
 */
export function reconcileFrom(mirror: KernelMirror, desired: DesiredState): { plan: WritePlan; next: KernelMirror } {
  return sameLayout(mirror, desired) ?? reconcileAll(mirror, desired);
}

/**
 * The diff when only bucket values changed: the same port ranges (the very
 * array: a replanned change of limits keeps it) and the same bucket keys in
 * the same order. Buckets that are the same objects as before are skipped
 * without a look, so a one-rule change costs a pass of pointer compares and
 * the writes of that rule's buckets, not a rebuild of maps of every bucket
 * and range. The mirror's maps are updated in place and handed on (the agent
 * keeps only the newest mirror, and drops it when an apply fails).
 * undefined when the layout changed: reconcileAll then diffs everything.
 */
function sameLayout(mirror: KernelMirror, desired: DesiredState): { plan: WritePlan; next: KernelMirror } | undefined {
  const before = mirror.desired;
  if (!before || before.ports !== desired.ports || before.buckets.length !== desired.buckets.length) return undefined;
  const changed: DesiredBucket[] = [];
  for (let i = 0; i < desired.buckets.length; i++) {
    const now = desired.buckets[i]!;
    const was = before.buckets[i]!;
    if (now === was) continue;
    if (now.key !== was.key || (now.mode === 'shape') !== (was.mode === 'shape')) return undefined;
    changed.push(now);
  }
  const rules: RuleWrite[] = [];
  const clientCfg: { slot: number; cfg: PsClientCfg }[] = [];
  const clientCfgRemove: number[] = [];
  for (const bucket of changed) {
    const previous = mirror.buckets.get(bucket.key)!;
    const slot = mirror.slots.get(bucket.key)!;
    if (!sameBucket(previous, bucket)) rules.push({ slot, rule: ruleValue(bucket, bucketKeyHash(bucket.key), mirror.classes.get(bucket.key)), fresh: false });
    const cfg = clientCfgValue(bucket);
    if (cfg && !sameClient(previous.client, bucket.client)) clientCfg.push({ slot, cfg });
    if (!cfg && previous.client) clientCfgRemove.push(slot);
    mirror.buckets.set(bucket.key, bucket);
  }
  clientCfgRemove.sort((a, b) => a - b);
  const none = new Uint32Array(0);
  const plan: WritePlan = { rules, portIndexes: none, portSlots: none, release: [], slots: mirror.slots, classes: mirror.classes, clientCfg, clientCfgRemove };
  return { plan, next: { ...mirror, desired } };
}

function reconcileAll(mirror: KernelMirror, desired: DesiredState): { plan: WritePlan; next: KernelMirror } {
  const buckets = new Map<string, DesiredBucket>();
  const slots = new Map<string, number>();
  const fresh: DesiredBucket[] = [];
  const rules: RuleWrite[] = [];
  // Buckets that keep their slot; the ps_rule of those whose parameters changed is rewritten below.
  const kept: DesiredBucket[] = [];
  for (const bucket of desired.buckets) {
    if (buckets.has(bucket.key)) {
      throw new PortshaperError(CODE.PS_PLAN_INCONSISTENT, `bucket "${bucket.key}" is defined twice`, { hint: 'rename one of the rules' });
    }
    buckets.set(bucket.key, bucket);
    const slot = mirror.slots.get(bucket.key);
    if (slot === undefined) fresh.push(bucket);
    else {
      slots.set(bucket.key, slot);
      kept.push(bucket);
    }
  }
  const gone: string[] = [];
  for (const key of mirror.slots.keys()) if (!buckets.has(key)) gone.push(key);
  const release = gone.map((key) => mirror.slots.get(key)!).sort((a, b) => a - b);

  let hashes = mirror.hashes;
  if (fresh.length || gone.length) {
    hashes = new Map(hashes);
    for (const key of gone) hashes.delete(bucketKeyHash(key));
    for (const bucket of fresh) {
      const hash = bucketKeyHash(bucket.key);
      const clash = hashes.get(hash);
      if (clash !== undefined) {
        throw new PortshaperError(CODE.PS_PLAN_INCONSISTENT, `bucket keys "${clash}" and "${bucket.key}" collide`, { hint: 'rename one of the rules' });
      }
      hashes.set(hash, bucket.key);
    }
  }

  // Classes as assignClasses() gives them: a bucket that stays shaped keeps its minor; new shaped buckets
  // (new, or shaping now) take the lowest minors no staying bucket holds.
  const classes = new Map<string, number>();
  const used = new Set<number>();
  const waiting: string[] = [];
  for (const bucket of desired.buckets) {
    if (bucket.mode !== 'shape') continue;
    const minor = mirror.classes.get(bucket.key);
    if (minor !== undefined && slots.has(bucket.key)) {
      classes.set(bucket.key, minor);
      used.add(minor);
    } else {
      waiting.push(bucket.key);
    }
  }
  let nextMinor = 1;
  for (const key of waiting) {
    while (used.has(nextMinor) || nextMinor === PS_HTB_MAJOR) nextMinor++;
    if (nextMinor > MAX_CLASS_MINOR) {
      throw new CapacityError(
        `the policy needs more than ${MAX_CLASS_MINOR} HTB classes`,
        'shape fewer buckets: use buckets: shared for large ranges, or mode: police for some rules',
      );
    }
    used.add(nextMinor);
    classes.set(key, nextMinor);
  }

  for (const bucket of kept) {
    const before = mirror.buckets.get(bucket.key)!;
    if (sameBucket(before, bucket) && classes.get(bucket.key) === mirror.classes.get(bucket.key)) continue;
    rules.push({ slot: slots.get(bucket.key)!, rule: ruleValue(bucket, bucketKeyHash(bucket.key), classes.get(bucket.key)), fresh: false });
  }

  // New buckets take the lowest slots no bucket in the kernel holds (released ones included: ports still point at them).
  if (fresh.length) {
    const inUse = new Set(mirror.slots.values());
    let next = 1;
    for (const bucket of fresh) {
      while (inUse.has(next)) next++;
      if (next >= mirror.maxSlots) {
        throw new CapacityError(
          `the policy needs more than ${mirror.maxSlots - 1} buckets`,
          'use shared buckets for port ranges ("buckets: shared") or fewer rules',
        );
      }
      inUse.add(next);
      slots.set(bucket.key, next);
      rules.push({ slot: next, rule: ruleValue(bucket, bucketKeyHash(bucket.key), classes.get(bucket.key)), fresh: true });
    }
  }

  // Ports: the ranges that went away are cleared, the new ones written; an entry both clear and written
  // to the slot it already has is left alone. Ranges of one table never overlap (validation), so this is exact.
  const ranges = new Map<string, DesiredPortRange>();
  for (const r of desired.ports) ranges.set(rangeKey(r), r);
  const before = new Map<number, number>();
  const after = new Map<number, number>();
  const each = (r: DesiredPortRange, slotOfPort: (p: number) => number, into: Map<number, number>) => {
    const base = portIndex(r.profile, DIR[r.direction], PROTO[r.protocol], SIDE[r.side], 0);
    for (let p = r.from; p <= r.to; p++) into.set(base | p, slotOfPort(p));
  };
  for (const [key, r] of mirror.ranges) {
    if (ranges.has(key)) continue;
    each(r, r.perPort ? (p) => mirror.slots.get(`${r.bucket}/${p}`) ?? 0 : () => mirror.slots.get(r.bucket) ?? 0, before);
  }
  for (const [key, r] of ranges) {
    if (mirror.ranges.has(key)) continue;
    each(r, r.perPort ? (p) => slotOf(slots, `${r.bucket}/${p}`) : () => slotOf(slots, r.bucket), after);
  }
  const writes: [number, number][] = [];
  for (const index of before.keys()) if (!after.has(index)) writes.push([index, 0]);
  for (const [index, slot] of after) if (before.get(index) !== slot) writes.push([index, slot]);
  writes.sort((a, b) => a[0] - b[0]);
  const portIndexes = Uint32Array.from(writes, (w) => w[0]);
  const portSlots = Uint32Array.from(writes, (w) => w[1]);

  // Per-client limits: written for new buckets and changed limits, removed where a bucket lost them or went away.
  const clientCfg: { slot: number; cfg: PsClientCfg }[] = [];
  const clientCfgRemove: number[] = [];
  for (const bucket of desired.buckets) {
    const cfg = clientCfgValue(bucket);
    const before = mirror.buckets.get(bucket.key);
    const slot = slots.get(bucket.key)!;
    if (cfg && (before === undefined || !sameClient(before.client, bucket.client))) clientCfg.push({ slot, cfg });
    if (!cfg && before?.client) clientCfgRemove.push(slot);
  }
  for (const key of gone) if (mirror.buckets.get(key)?.client) clientCfgRemove.push(mirror.slots.get(key)!);
  clientCfgRemove.sort((a, b) => a - b);

  const plan = { rules, portIndexes, portSlots, release, slots, classes, clientCfg, clientCfgRemove };
  return { plan, next: { buckets, ranges, slots, classes, hashes, maxSlots: mirror.maxSlots, desired } };
}
