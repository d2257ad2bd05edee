/**
 * Reconcile: compare the desired state with a snapshot of the kernel's maps
 * and compute the smallest set of writes. Pure (no kernel access), so it is
 * unit-tested exhaustively; src/kernel/apply.ts performs the writes.
 *
 * Buckets keep their slot across reloads and agent restarts: each slot's
 * ps_rule carries a 64-bit hash of the bucket key, so a new agent finds the
 * slot (with its credit and counters) of every bucket it still wants.
 */
import { CapacityError, PortshaperError } from '../errors.js';
import type { DesiredBucket, DesiredState } from './desired.js';
import { PS, portIndex, type PsRule } from './layout.js';
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
    mode: MODE[b.mode],
    flags: PS.PS_RULE_IN_USE,
    classid: b.mode === 'shape' ? classId(classMinor) : 0,
    pad: 0,
  };
}

function sameRule(a: PsRule, b: PsRule): boolean {
  return (
    a.rate_bps === b.rate_bps &&
    a.burst_ns === b.burst_ns &&
    a.key_hash === b.key_hash &&
    a.ecn_ns === b.ecn_ns &&
    a.horizon_ns === b.horizon_ns &&
    a.mode === b.mode &&
    a.flags === b.flags &&
    a.classid === b.classid
  );
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
    throw new PortshaperError('PS_PLAN_INCONSISTENT', `port range refers to bucket "${key}" that the plan does not define`);
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
        'PS_PLAN_INCONSISTENT',
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
    if (!sameRule(want, snapshot.rules.get(slot)!)) rules.push({ slot, rule: want, fresh: false });
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
  return { rules, portIndexes, portSlots, release, slots, classes };
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
  return plan.rules.length === 0 && plan.portIndexes.length === 0 && plan.release.length === 0;
}
