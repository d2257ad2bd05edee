/**
 * A typed handle on one BPF map with u32 keys: single-element access for the
 * rare write, batch access for everything that touches many entries.
 */
import {
  closeFd,
  deleteElem,
  lookupBatch,
  lookupElem,
  updateBatch,
  updateElem,
} from './libbpf.js';

/** Entries per batch syscall: large enough to amortise the call, small enough to bound buffers. */
const BATCH = 65536;

export interface MapShape {
  /** Map name, for error messages. */
  name: string;
  /** Value size of one element (one CPU's share for per-CPU maps). */
  valueSize: number;
  /** Per-CPU map: one value per possible CPU. */
  perCpu: boolean;
  /** Number of possible CPUs. */
  cpus: number;
  maxEntries: number;
}

/** A BPF map keyed by u32 (array or hash). */
export class U32Map {
  /** Bytes of one element as the syscall sees it: per-CPU values are roundup(size, 8) × CPUs. */
  readonly stride: number;

  constructor(
    readonly fd: number,
    readonly shape: MapShape,
  ) {
    this.stride = shape.perCpu ? roundUp8(shape.valueSize) * shape.cpus : shape.valueSize;
  }

  get name(): string {
    return this.shape.name;
  }

  /** Read one element's raw bytes, or null when absent. */
  get(key: number): Buffer | null {
    const value = Buffer.alloc(this.stride);
    return lookupElem(this.fd, u32(key), value, `${this.name}[${key}]`) ? value : null;
  }

  /** Write one element's raw bytes. */
  set(key: number, value: Buffer): void {
    updateElem(this.fd, u32(key), value, `${this.name}[${key}]`);
  }

  /** Delete one element (hash maps); false if it was absent. */
  delete(key: number): boolean {
    return deleteElem(this.fd, u32(key), `${this.name}[${key}]`);
  }

  /**
   * Read every element (at most `limit`) with batch syscalls. Returns keys
   * and values packed (values[i * stride ...]). For arrays, keys 0..limit-1.
   * `into` lends buffers to read into (a reader called every second then
   * allocates nothing); they must hold `limit` elements.
   */
  readAll(limit = this.shape.maxEntries, into?: { keys: Buffer; values: Buffer }): { keys: Uint32Array; values: Buffer; count: number } {
    return this.readRange(0, limit, into);
  }

  /**
   * Read up to `limit` elements from key `from` on (arrays: keys from..from+limit-1),
   * with batch syscalls, into `into` when it is large enough.
   */
  readRange(from: number, limit: number, into?: { keys: Buffer; values: Buffer }): { keys: Uint32Array; values: Buffer; count: number } {
    const max = Math.max(0, Math.min(limit, this.shape.maxEntries - from));
    const keys = into && into.keys.length >= 4 * max ? into.keys : Buffer.alloc(4 * max);
    const values = into && into.values.length >= this.stride * max ? into.values : Buffer.alloc(this.stride * max);
    const token = Buffer.alloc(4);
    const next = Buffer.alloc(4);
    // The batch token is the last key read: the kernel resumes at the key after
    // it (map_get_next_key), so starting at `from` means a token of from - 1.
    let first = from === 0;
    if (!first) token.writeUInt32LE(from - 1);
    let total = 0;
    for (;;) {
      const want = Math.min(BATCH, max - total);
      if (want === 0) break;
      const { count, done } = lookupBatch(
        this.fd,
        first ? null : token,
        next,
        keys.subarray(4 * total),
        values.subarray(this.stride * total),
        want,
        this.name,
      );
      total += count;
      first = false;
      if (done) break;
      next.copy(token);
    }
    return {
      keys: new Uint32Array(keys.buffer, keys.byteOffset, total),
      values: values.subarray(0, this.stride * total),
      count: total,
    };
  }

  /** Write many elements: keys[i] gets values[i * stride ...]. */
  writeMany(keys: Uint32Array, values: Buffer): void {
    for (let at = 0; at < keys.length; at += BATCH) {
      const n = Math.min(BATCH, keys.length - at);
      const k = Buffer.from(keys.buffer, keys.byteOffset + 4 * at, 4 * n);
      updateBatch(this.fd, k, values.subarray(this.stride * at, this.stride * (at + n)), n, this.name);
    }
  }

  /** Close our fd (pins keep the map alive). */
  close(): void {
    closeFd(this.fd);
  }
}

/** roundup(n, 8), the per-CPU value stride the kernel uses. */
export function roundUp8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** A u32 key buffer. */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
