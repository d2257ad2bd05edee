/**
 * The loaded data plane: the BPF object with its maps pinned under bpffs
 * (pins.ts), attached to tc clsact hooks (tc.ts), and typed access to
 * every map.
 *
 * Opening adopts existing pins (credit and counters survive an agent restart
 * or upgrade) after checking that they carry our layout version.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CODE, PinLayoutError, PortshaperError } from '../errors.js';
import {
  type BpfObject,
  closeObject,
  findMap,
  findProgram,
  loadObject,
  mapFd,
  type MappedMap,
  mmapMap,
  openObject,
  possibleCpus,
  programFd,
  setInitialValue,
  setMaxEntries,
  setPinPath,
  testRun,
  type TestRunResult,
  updateElem,
} from './libbpf.js';
import { PS, psIface, psMeta, psRule, type PsIface, type PsMeta } from './layout.js';
import { U32Map, roundUp8, u32 } from './maps.js';
import { DEFAULT_PIN_DIR, ensureBpffs, MAP_NAMES, MAP_SPECS, pinnedEntries, readPinnedMeta, U32_MAP_NAMES, type U32MapName } from './pins.js';
import { attachedFilters, attachFilters, detachFilters, type Hooks } from './tc.js';

/** Bytes per ps_ports element in the kernel (array values are rounded up to 8). */
const PORT_ELEM = 8;

/** The compiled object, next to the package: bpf/portshaper.bpf.o. */
export const DEFAULT_OBJECT_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bpf', 'portshaper.bpf.o');

export interface OpenOptions {
  /** The compiled BPF object (default: the one shipped in bpf/). */
  objectPath?: string;
  /** bpffs directory for the pins (default /sys/fs/bpf/portshaper). */
  pinDir?: string;
  /** Tests only: take time from ps_test_now instead of the kernel clock. */
  testClock?: boolean;
  /** Entries of the per-client table when it is created (pinned tables keep their size). */
  clientTable?: number;
}

/** A loaded portshaper object with its pinned maps. */
export class DataPlane {
  readonly maps: Record<U32MapName, U32Map>;
  /** ps_clients (24-byte keys): read with readClients() in counters.ts. */
  readonly clientsFd: number;
  readonly cpus: number;
  /** The two tables mapped into memory while an apply uses them (see releaseViews). */
  private mapped: { ports: MappedMap; rules: MappedMap; portsView: Uint32Array; rulesView: Buffer } | undefined;
  private closed = false;

  private constructor(
    private readonly obj: BpfObject,
    readonly pinDir: string,
    /** True when the maps were adopted from an earlier process. */
    readonly adopted: boolean,
    readonly programs: { ingress: number; egress: number },
    private readonly testClockFd: number | null,
    /** Entries of the per-client table in use (a pinned table keeps its size). */
    readonly clientTable: number,
  ) {
    this.cpus = possibleCpus();
    this.maps = Object.fromEntries(
      U32_MAP_NAMES.map((name) => [name, new U32Map(mapFd(findMap(obj, name)), { name, ...MAP_SPECS[name], cpus: this.cpus })]),
    ) as Record<U32MapName, U32Map>;
    this.clientsFd = mapFd(findMap(obj, 'ps_clients'));
  }

  /** ps_ports mapped into memory: element i is at [2 * i] (array elements are 8-byte aligned). Mapped on first use. */
  get portsView(): Uint32Array {
    return this.views().portsView;
  }

  /** ps_rules mapped into memory (read-only use: writes go through syscalls). Mapped on first use. */
  get rulesView(): Buffer {
    return this.views().rulesView;
  }

  /**
   * Unmap the tables until the next use. The kernel inserts every page of a
   * BPF array at mmap, so mapped they count ~40 MiB in the agent's RSS for
   * memory the kernel holds anyway; only the first apply after adoption (a
   * snapshot) and port writes need them. No view read before may be used after.
   */
  releaseViews(): void {
    if (!this.mapped) return;
    this.mapped.ports.unmap();
    this.mapped.rules.unmap();
    this.mapped = undefined;
  }

  private views(): NonNullable<DataPlane['mapped']> {
    this.assertOpen();
    if (!this.mapped) {
      const ports = mmapMap(this.maps.ps_ports.fd, PORT_ELEM * PS.PS_PORT_TABLE_SIZE, 'ps_ports');
      const rules = mmapMap(this.maps.ps_rules.fd, roundUp8(psRule.size) * PS.PS_MAX_SLOTS, 'ps_rules');
      this.mapped = { ports, rules, portsView: new Uint32Array(ports.buffer), rulesView: Buffer.from(rules.buffer) };
    }
    return this.mapped;
  }

  /**
   * Load the object and pin its maps under pinDir, adopting pins left by an
   * earlier agent (same layout) instead of recreating them.
   */
  static open(options: OpenOptions = {}): DataPlane {
    const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
    const objectPath = options.objectPath ?? DEFAULT_OBJECT_PATH;
    if (!existsSync(objectPath)) {
      throw new PortshaperError(CODE.PS_BPF_OBJECT, `BPF object not found at ${objectPath}`, {
        hint: 'build it with "make" (needs clang; "make setup" installs it)',
      });
    }
    ensureBpffs(pinDir);
    const meta = readPinnedMeta(pinDir);
    if (meta && meta.layout_version !== PS.PS_LAYOUT_VERSION) {
      throw new PinLayoutError(pinDir, String(meta.layout_version), PS.PS_LAYOUT_VERSION);
    }
    const adopted = meta !== null;

    // A pinned client table keeps its size (libbpf reuses a pin only if its shape matches).
    const pinnedClients = existsSync(join(pinDir, 'ps_clients')) ? pinnedEntries(pinDir, 'ps_clients') : undefined;
    const clientTable = pinnedClients ?? options.clientTable ?? PS.PS_CLIENTS_DEFAULT;

    const obj = openObject(objectPath);
    try {
      for (const name of MAP_NAMES) setPinPath(findMap(obj, name), join(pinDir, name));
      setMaxEntries(findMap(obj, 'ps_clients'), clientTable, 'the client table ps_clients');
      if (options.testClock) {
        const on = Buffer.alloc(4);
        on.writeUInt32LE(1);
        setInitialValue(findMap(obj, '.rodata.testclock'), on);
      }
      loadObject(obj, objectPath);
      const programs = {
        ingress: programFd(findProgram(obj, 'ps_ingress')),
        egress: programFd(findProgram(obj, 'ps_egress')),
      };
      const clockFd = options.testClock ? mapFd(findMap(obj, '.data.testclock')) : null;
      const dp = new DataPlane(obj, pinDir, adopted, programs, clockFd, clientTable);
      if (!adopted) dp.writeMeta();
      return dp;
    } catch (err) {
      closeObject(obj);
      throw err;
    }
  }

  private writeMeta(): void {
    const meta: PsMeta = {
      layout_version: PS.PS_LAYOUT_VERSION,
      max_slots: PS.PS_MAX_SLOTS,
      max_profiles: PS.PS_MAX_PROFILES,
      port_table_size: PS.PS_PORT_TABLE_SIZE,
      created_ns: process.hrtime.bigint(),
    };
    this.maps.ps_meta.set(0, psMeta.encode(meta));
  }

  /** The layout record of the pins in use. */
  meta(): PsMeta {
    const raw = this.maps.ps_meta.get(0);
    if (!raw) throw new PortshaperError(CODE.PS_PIN_LAYOUT, `ps_meta in ${this.pinDir} is empty`);
    return psMeta.decode(raw);
  }

  /**
   * Attach our filter to the chosen hooks of an interface (see attachFilters
   * in tc.ts). Register the interface first (setInterface).
   */
  attach(ifindex: number, ifname: string, hooks: Hooks): void {
    attachFilters(ifindex, ifname, this.programs, hooks);
  }

  /** Remove our filters from an interface (only ours; the qdisc and others' filters stay). */
  detach(ifindex: number, ifname: string): void {
    detachFilters(ifindex, ifname);
  }

  /** Program ids of our filters on an interface (0 where none is attached). */
  attached(ifindex: number, ifname: string): { ingress: number; egress: number } {
    return attachedFilters(ifindex, ifname);
  }

  /** Registered interfaces: ifindex → profile and counter row. */
  interfaces(): Map<number, PsIface> {
    const { keys, values, count } = this.maps.ps_ifaces.readAll();
    const out = new Map<number, PsIface>();
    for (let i = 0; i < count; i++) out.set(keys[i]!, psIface.decode(values, i * psIface.size));
    return out;
  }

  /**
   * Register an interface with a rule profile. Keeps its counter row if it
   * has one, otherwise takes the lowest free row (row 0 is "unregistered").
   * remote: the profile has side: remote rules in that direction (the
   * program skips the remote-port lookup otherwise). countUnmatched: count
   * traffic no rule matched per port in ps_unmatched.
   */
  setInterface(ifindex: number, profile: number, remote = { ingress: true, egress: true }, countUnmatched = false): PsIface {
    const current = this.interfaces();
    const existing = current.get(ifindex);
    let row = existing?.stats_row;
    if (row === undefined) {
      const used = new Set([...current.values()].map((v) => v.stats_row));
      row = 1;
      while (used.has(row)) row++;
      if (row >= PS.PS_MAX_IFACES) {
        throw new PortshaperError(CODE.PS_CAPACITY, `more than ${PS.PS_MAX_IFACES - 1} interfaces registered`, {
          hint: 'remove interfaces from the policy or detach stale ones with "portshaper detach"',
        });
      }
    }
    const flags =
      (remote.ingress ? PS.PS_IFACE_REMOTE_INGRESS : 0) |
      (remote.egress ? PS.PS_IFACE_REMOTE_EGRESS : 0) |
      (countUnmatched ? PS.PS_IFACE_COUNT_UNMATCHED : 0);
    const value = { profile, stats_row: row, flags, pad: 0 };
    if (existing && existing.profile === profile && existing.flags === flags) return existing;
    this.maps.ps_ifaces.set(ifindex, psIface.encode(value));
    return value;
  }

  /** Forget an interface (its traffic is then passed unjudged). */
  removeInterface(ifindex: number): boolean {
    return this.maps.ps_ifaces.delete(ifindex);
  }

  /** Tests only: set the clock the program reads when opened with testClock. */
  setTestNow(ns: bigint): void {
    if (this.testClockFd === null) throw new PortshaperError(CODE.PS_INTERNAL, 'data plane was not opened with testClock');
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(ns);
    // .data.testclock is an array map of one element holding the section.
    updateElem(this.testClockFd, u32(0), v, '.data.testclock');
  }

  /** Run one direction's program on a crafted frame (BPF_PROG_TEST_RUN). */
  testRun(direction: 'ingress' | 'egress', frame: Buffer, ctx: Buffer | null = null, repeat = 1): TestRunResult {
    return testRun(direction === 'ingress' ? this.programs.ingress : this.programs.egress, frame, ctx, repeat);
  }

  /** Throw if close() was called: the mapped views are gone then. */
  assertOpen(): void {
    if (this.closed) throw new PortshaperError(CODE.PS_INTERNAL, 'data plane used after close()');
  }

  /** Close our fds. Pins and tc filters keep the data plane enforcing. */
  close(): void {
    if (this.closed) return;
    this.releaseViews();
    this.closed = true;
    closeObject(this.obj);
  }
}
