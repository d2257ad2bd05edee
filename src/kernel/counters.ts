/**
 * Readers of the data plane's counters and bucket state. Per-CPU values are
 * summed here; many slots are read with batch syscalls, never one per rule.
 */
import type { DataPlane } from './dataplane.js';
import {
  GLOBAL_KINDS,
  PS,
  psBucket,
  psClient,
  psClientKey,
  psCounters,
  psGlobal,
  zeroCounters,
  type GlobalKind,
  type PsBucket,
  type PsClient,
  type PsCounters,
} from './layout.js';
import { formatIpv6 } from './address.js';
import { lookupBatch } from './libbpf.js';
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

/** Byte offset of a ps_counters field in one CPU's value. */
export function counterOffset(field: keyof PsCounters): number {
  return psCounters.fields.find((f) => f.name === field)!.offset;
}

/** Byte offset of every ps_counters field, in struct order. */
export const ALL_COUNTER_OFFSETS: readonly number[] = psCounters.fields.map((f) => f.offset);

/**
 * Sum some u64 fields of per-CPU ps_counters values into numbers, without a
 * BigInt per value per CPU: raw holds slot s at s * stride, one
 * roundup(size, 8) share per CPU; out gets, for the i-th slot of `slots`,
 * the sum of field k at out[i * offsets.length + k]. Numbers are exact up to
 * 2^53 (8 PiB), past any counter of a running host. Reads 32-bit words
 * through a typed view: a Buffer.readUInt32LE call per word cost 3x as much
 * at 65,536 slots.
 */
export function sumCounterFields(raw: Buffer, stride: number, cpus: number, slots: ArrayLike<number>, offsets: readonly number[], out: Float64Array): void {
  const words = wordsOf(raw);
  const step = roundUp8(psCounters.size) >>> 2;
  const width = offsets.length;
  for (let i = 0; i < slots.length; i++) {
    const base = (slots[i]! * stride) >>> 2;
    for (let k = 0; k < width; k++) {
      let sum = 0;
      for (let cpu = 0, at = base + (offsets[k]! >>> 2); cpu < cpus; cpu++, at += step) sum += words[at]! + words[at + 1]! * 0x1_0000_0000;
      out[i * width + k] = sum;
    }
  }
}

/** raw as little-endian u32 words (x86_64 and aarch64 are little-endian); copied when not 4-byte aligned. */
function wordsOf(raw: Buffer): Uint32Array {
  if (raw.byteOffset % 4 === 0) return new Uint32Array(raw.buffer, raw.byteOffset, raw.length >>> 2);
  return new Uint32Array(Uint8Array.prototype.slice.call(raw).buffer);
}

/**
 * Reads ranges of ps_counters slots, summed over CPUs into numbers, with
 * batch lookups into buffers kept across calls: a reader called every second
 * allocates nothing once its buffers fit.
 */
export class CounterRangeReader {
  private buffers: { keys: Buffer; values: Buffer; index: Uint32Array } | undefined;

  constructor(private readonly dp: Pick<DataPlane, 'cpus' | 'maps'>) {}

  /**
   * Slots [from, from + count): field offsets[k] of the i-th slot summed into
   * out[(at + i) * offsets.length + k]. Returns the slots read (fewer past the map's end).
   */
  read(from: number, count: number, offsets: readonly number[], out: Float64Array, at = 0): number {
    const map = this.dp.maps.ps_counters;
    if (!this.buffers || this.buffers.index.length < count) {
      const room = Math.max(count, 64);
      this.buffers = { keys: Buffer.alloc(4 * room), values: Buffer.alloc(map.stride * room), index: Uint32Array.from({ length: room }, (_, i) => i) };
    }
    const { values, count: got } = map.readRange(from, count, this.buffers);
    sumCounterFields(values, map.stride, this.dp.cpus, this.buffers.index.subarray(0, got), offsets, at ? out.subarray(at * offsets.length) : out);
    return got;
  }
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

/** One client of a bucket as ps_clients holds it. */
export interface ClientEntry {
  slot: number;
  /** The client's address: IPv4 dotted, or the IPv6 prefix in its shortest form. */
  address: string;
  state: PsClient;
}

/** Entries per batch syscall when walking ps_clients. */
const CLIENT_BATCH = 4096;

/**
 * Every client in ps_clients (optionally only those of some slots), read
 * with batch syscalls while the program keeps running: an entry added or
 * evicted meanwhile may be missed or seen, never torn (the kernel copies
 * each value under the bucket lock).
 */
export function readClients(dp: DataPlane, slots?: Set<number>): ClientEntry[] {
  dp.assertOpen();
  const keys = Buffer.alloc(psClientKey.size * CLIENT_BATCH);
  const values = Buffer.alloc(psClient.size * CLIENT_BATCH);
  const token = Buffer.alloc(4);
  const next = Buffer.alloc(4);
  const out: ClientEntry[] = [];
  for (let first = true; ; first = false) {
    const { count, done } = lookupBatch(dp.clientsFd, first ? null : token, next, keys, values, CLIENT_BATCH, 'ps_clients');
    for (let i = 0; i < count; i++) {
      const at = i * psClientKey.size;
      const slot = keys.readUInt32LE(at);
      if (slots && !slots.has(slot)) continue;
      const family = keys.readUInt32LE(at + 4);
      const addr = keys.subarray(at + 8, at + 24);
      out.push({ slot, address: formatAddress(family, addr), state: psClient.decode(values, i * psClient.size) });
    }
    if (done) break;
    next.copy(token);
  }
  return out;
}

/** An IPv4-mapped key as a.b.c.d; an IPv6 one in RFC 5952 short form. */
export function formatAddress(family: number, addr: Buffer): string {
  if (family === 4) return `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
  return formatIpv6(addr);
}
