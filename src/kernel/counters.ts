/**
 * Readers of the data plane's counters and bucket state. Per-CPU values are
 * summed here; many slots are read with batch syscalls, never one per rule.
 */
import type { DataPlane } from './dataplane.js';
import { GLOBAL_KINDS, PS, psBucket, psCounters, psGlobal, zeroCounters, type GlobalKind, type PsBucket, type PsCounters } from './layout.js';
import { roundUp8 } from './maps.js';

const COUNTER_FIELDS = psCounters.fields.map((f) => f.name) as (keyof PsCounters)[];

/** Add c into total, field by field (per-CPU values, buckets of one rule). */
export function addCounters(total: PsCounters, c: PsCounters): PsCounters {
  for (const k of COUNTER_FIELDS) total[k] += c[k];
  return total;
}

/** Sum one per-CPU ps_counters value (cpus × roundup(size, 8) bytes at `at`). */
export function sumCounters(raw: Buffer, at: number, cpus: number): PsCounters {
  const total = zeroCounters();
  const step = roundUp8(psCounters.size);
  for (let cpu = 0; cpu < cpus; cpu++) addCounters(total, psCounters.decode(raw, at + cpu * step));
  return total;
}

/** Counters of one slot, summed over CPUs. */
export function readSlotCounters(dp: DataPlane, slot: number): PsCounters {
  const raw = dp.maps.ps_counters.get(slot);
  return raw ? sumCounters(raw, 0, dp.cpus) : zeroCounters();
}

/** Counters of every given slot, read with batch syscalls over [0, max slot]. */
export function readCounters(dp: DataPlane, slots: Iterable<number>): Map<number, PsCounters> {
  const wanted = [...slots];
  const out = new Map<number, PsCounters>();
  if (!wanted.length) return out;
  // A loop, not Math.max(...wanted): spreading 100k+ slots overflows the call stack.
  let max = 0;
  for (const slot of wanted) if (slot > max) max = slot;
  const { values, count } = dp.maps.ps_counters.readAll(max + 1);
  const stride = dp.maps.ps_counters.stride;
  for (const slot of wanted) if (slot < count) out.set(slot, sumCounters(values, slot * stride, dp.cpus));
  return out;
}

/** Bucket state of a slot (for tests and diagnostics). */
export function readBucket(dp: DataPlane, slot: number): PsBucket | null {
  const raw = dp.maps.ps_buckets.get(slot);
  return raw ? psBucket.decode(raw) : null;
}

/** Packets and bytes no rule accounts for, by kind. */
export type GlobalCounters = Record<GlobalKind, { pkts: bigint; bytes: bigint }>;

/** Global counters of one interface row and direction (row 0: unregistered interfaces). */
export function readGlobal(dp: DataPlane, row: number, direction: 'ingress' | 'egress'): GlobalCounters {
  const key = row * 2 + (direction === 'ingress' ? PS.PS_DIR_INGRESS : PS.PS_DIR_EGRESS);
  const raw = dp.maps.ps_global.get(key);
  const out = Object.fromEntries(GLOBAL_KINDS.map((k) => [k, { pkts: 0n, bytes: 0n }])) as GlobalCounters;
  if (!raw) return out;
  const step = roundUp8(psGlobal.size);
  for (let cpu = 0; cpu < dp.cpus; cpu++) {
    const g = psGlobal.decode(raw, cpu * step);
    GLOBAL_KINDS.forEach((k, i) => {
      out[k].pkts += g.pkts[i]!;
      out[k].bytes += g.bytes[i]!;
    });
  }
  return out;
}
