/**
 * The loaded data plane: the BPF object with its maps pinned under bpffs,
 * attachment to tc clsact hooks, and typed access to every map.
 *
 * Opening adopts existing pins (credit and counters survive an agent restart
 * or upgrade) after checking that they carry our layout version.
 */
import { existsSync, mkdirSync, statfsSync, unlinkSync, readdirSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PinLayoutError, PortshaperError } from '../errors.js';
import {
  BPF_TC_EGRESS,
  BPF_TC_INGRESS,
  type BpfObject,
  type TcFilterId,
  type TcHookPoint,
  closeFd,
  closeObject,
  findMap,
  findProgram,
  loadObject,
  lookupElem,
  mapFd,
  mapInfo,
  type MappedMap,
  mmapMap,
  mountBpffs,
  objGet,
  openObject,
  possibleCpus,
  programFd,
  setInitialValue,
  setPinPath,
  tcAttach,
  tcDetach,
  tcEnsureClsact,
  tcQuery,
  testRun,
  type TestRunResult,
  updateElem,
} from './libbpf.js';
import {
  PS,
  psBucket,
  psCounters,
  psGlobal,
  psIface,
  psMeta,
  psRule,
  type PsIface,
  type PsMeta,
} from './layout.js';
import { U32Map, roundUp8, u32 } from './maps.js';

/** Bytes per ps_ports element in the kernel (array values are rounded up to 8). */
const PORT_ELEM = 8;

/** Where pins live unless configured otherwise. */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/portshaper';

/** The compiled object, next to the package: bpf/portshaper.bpf.o. */
export const DEFAULT_OBJECT_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bpf', 'portshaper.bpf.o');

/**
 * Our filter on every clsact hook: a fixed handle ("PS") and priority so we
 * find, replace and remove exactly our own filter and never anyone else's.
 * Priority 0x5053 runs before filters added with tc's default (49152) and
 * after tools that claim the first priorities.
 */
export const TC_FILTER: TcFilterId = { handle: 0x5053, priority: 0x5053 };

const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * Every map of portshaper.bpf.c, pinned at <pinDir>/<name>: the one table of
 * their shapes, used to open them, to check pins before adopting them, and
 * to read pins without loading the program.
 */
const MAP_SPECS = {
  ps_ports: { valueSize: 4, perCpu: false, maxEntries: PS.PS_PORT_TABLE_SIZE },
  ps_rules: { valueSize: psRule.size, perCpu: false, maxEntries: PS.PS_MAX_SLOTS },
  ps_buckets: { valueSize: psBucket.size, perCpu: false, maxEntries: PS.PS_MAX_SLOTS },
  ps_counters: { valueSize: psCounters.size, perCpu: true, maxEntries: PS.PS_MAX_SLOTS },
  ps_ifaces: { valueSize: psIface.size, perCpu: false, maxEntries: PS.PS_MAX_IFACES },
  ps_global: { valueSize: psGlobal.size, perCpu: true, maxEntries: PS.PS_MAX_IFACES * 2 },
  ps_meta: { valueSize: psMeta.size, perCpu: false, maxEntries: 1 },
} as const;
type MapName = keyof typeof MAP_SPECS;

/** Map names; each is pinned at <pinDir>/<name>. */
export const MAP_NAMES = Object.keys(MAP_SPECS) as MapName[];

/** The hooks of one interface. */
export interface Hooks {
  ingress: boolean;
  egress: boolean;
}

export interface OpenOptions {
  /** The compiled BPF object (default: the one shipped in bpf/). */
  objectPath?: string;
  /** bpffs directory for the pins (default /sys/fs/bpf/portshaper). */
  pinDir?: string;
  /** Tests only: take time from ps_test_now instead of the kernel clock. */
  testClock?: boolean;
}

/** Whether an existing directory is on a bpf filesystem. */
export function onBpffs(dir: string): boolean {
  return statfsSync(dir).type === BPF_FS_MAGIC;
}

/** Make sure dir exists on a bpf filesystem, mounting one if needed. */
export function ensureBpffs(dir: string): void {
  let probe = dir;
  while (!existsSync(probe)) probe = dirname(probe);
  if (statfsSync(probe).type !== BPF_FS_MAGIC) {
    // The usual case is a host where nobody mounted /sys/fs/bpf; mount it
    // there so other BPF tools see our pins too. Otherwise mount at dir.
    const target = dir === '/sys/fs/bpf' || dir.startsWith('/sys/fs/bpf/') ? '/sys/fs/bpf' : dir;
    mkdirSync(target, { recursive: true });
    mountBpffs(target);
  }
  mkdirSync(dir, { recursive: true });
}

/**
 * Open a pinned map of ours, after checking with the kernel that its key and
 * value sizes are the ones this build reads: a pin from another layout must
 * be refused, never read into a buffer sized for ours.
 */
function openPinnedMap(pinDir: string, name: MapName): number {
  const spec = MAP_SPECS[name];
  const fd = objGet(join(pinDir, name));
  const info = mapInfo(fd, join(pinDir, name));
  if (info.keySize !== 4 || info.valueSize !== spec.valueSize || info.maxEntries !== spec.maxEntries) {
    closeFd(fd);
    throw new PinLayoutError(
      pinDir,
      `unknown (${name} has ${info.keySize}-byte keys and ${info.valueSize}-byte values, ${info.maxEntries} entries)`,
      PS.PS_LAYOUT_VERSION,
    );
  }
  return fd;
}

/**
 * Check every existing pin's shape, then read the layout record: null if
 * there are no pins. A partial set (a crash while pinning) is fine: libbpf
 * pins the missing maps.
 */
function readPinnedMeta(pinDir: string): PsMeta | null {
  for (const name of MAP_NAMES) if (existsSync(join(pinDir, name))) closeFd(openPinnedMap(pinDir, name));
  if (!existsSync(join(pinDir, 'ps_meta'))) return null;
  const fd = openPinnedMap(pinDir, 'ps_meta');
  try {
    const value = Buffer.alloc(psMeta.size);
    if (!lookupElem(fd, u32(0), value, 'ps_meta[0]')) return null;
    return psMeta.decode(value);
  } finally {
    closeFd(fd);
  }
}

/** A loaded portshaper object with its pinned maps. */
export class DataPlane {
  readonly maps: Record<MapName, U32Map>;
  readonly cpus: number;
  /** ps_ports mapped into memory: element i is at [2 * i] (array elements are 8-byte aligned). */
  readonly portsView: Uint32Array;
  /** ps_rules mapped into memory (read-only use: writes go through syscalls). */
  readonly rulesView: Buffer;
  private readonly mappings: MappedMap[];
  private closed = false;

  private constructor(
    private readonly obj: BpfObject,
    readonly pinDir: string,
    /** True when the maps were adopted from an earlier process. */
    readonly adopted: boolean,
    readonly programs: { ingress: number; egress: number },
    private readonly testClockFd: number | null,
  ) {
    this.cpus = possibleCpus();
    this.maps = Object.fromEntries(
      MAP_NAMES.map((name) => [name, new U32Map(mapFd(findMap(obj, name)), { name, ...MAP_SPECS[name], cpus: this.cpus })]),
    ) as Record<MapName, U32Map>;
    const ports = mmapMap(this.maps.ps_ports.fd, PORT_ELEM * PS.PS_PORT_TABLE_SIZE, 'ps_ports');
    const rules = mmapMap(this.maps.ps_rules.fd, roundUp8(psRule.size) * PS.PS_MAX_SLOTS, 'ps_rules');
    this.mappings = [ports, rules];
    this.portsView = new Uint32Array(ports.buffer);
    this.rulesView = Buffer.from(rules.buffer);
  }

  /**
   * Load the object and pin its maps under pinDir, adopting pins left by an
   * earlier agent (same layout) instead of recreating them.
   */
  static open(options: OpenOptions = {}): DataPlane {
    const pinDir = options.pinDir ?? DEFAULT_PIN_DIR;
    const objectPath = options.objectPath ?? DEFAULT_OBJECT_PATH;
    if (!existsSync(objectPath)) {
      throw new PortshaperError('PS_BPF_OBJECT', `BPF object not found at ${objectPath}`, {
        hint: 'build it with "make" (needs clang; "make setup" installs it)',
      });
    }
    ensureBpffs(pinDir);
    const meta = readPinnedMeta(pinDir);
    if (meta && meta.layout_version !== PS.PS_LAYOUT_VERSION) {
      throw new PinLayoutError(pinDir, String(meta.layout_version), PS.PS_LAYOUT_VERSION);
    }
    const adopted = meta !== null;

    const obj = openObject(objectPath);
    try {
      for (const name of MAP_NAMES) setPinPath(findMap(obj, name), join(pinDir, name));
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
      const dp = new DataPlane(obj, pinDir, adopted, programs, clockFd);
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
    if (!raw) throw new PortshaperError('PS_PIN_LAYOUT', `ps_meta in ${this.pinDir} is empty`);
    return psMeta.decode(raw);
  }

  /**
   * Attach our filter to the chosen hooks of an interface, creating the clsact
   * qdisc if absent; an existing filter of ours is replaced atomically (no
   * moment without enforcement). Register the interface first (setInterface).
   */
  attach(ifindex: number, ifname: string, hooks: Hooks): void {
    tcEnsureClsact(ifindex, ifname);
    if (hooks.ingress) tcAttach(ifindex, BPF_TC_INGRESS, TC_FILTER, this.programs.ingress, `tc ingress of ${ifname}`);
    if (hooks.egress) tcAttach(ifindex, BPF_TC_EGRESS, TC_FILTER, this.programs.egress, `tc egress of ${ifname}`);
    if (!hooks.ingress) tcDetach(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`);
    if (!hooks.egress) tcDetach(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`);
  }

  /** Remove our filters from an interface (only ours; the qdisc and others' filters stay). */
  detach(ifindex: number, ifname: string): void {
    tcDetach(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`);
    tcDetach(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`);
  }

  /** Program ids of our filters on an interface (0 where none is attached). */
  attached(ifindex: number, ifname: string): { ingress: number; egress: number } {
    return {
      ingress: tcQuery(ifindex, BPF_TC_INGRESS, TC_FILTER, `tc ingress of ${ifname}`),
      egress: tcQuery(ifindex, BPF_TC_EGRESS, TC_FILTER, `tc egress of ${ifname}`),
    };
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
   */
  setInterface(ifindex: number, profile: number): PsIface {
    const current = this.interfaces();
    const existing = current.get(ifindex);
    let row = existing?.stats_row;
    if (row === undefined) {
      const used = new Set([...current.values()].map((v) => v.stats_row));
      row = 1;
      while (used.has(row)) row++;
      if (row >= PS.PS_MAX_IFACES) {
        throw new PortshaperError('PS_CAPACITY', `more than ${PS.PS_MAX_IFACES - 1} interfaces registered`, {
          hint: 'remove interfaces from the policy or detach stale ones with "portshaper detach"',
        });
      }
    }
    const value = { profile, stats_row: row };
    this.maps.ps_ifaces.set(ifindex, psIface.encode(value));
    return value;
  }

  /** Forget an interface (its traffic is then passed unjudged). */
  removeInterface(ifindex: number): boolean {
    return this.maps.ps_ifaces.delete(ifindex);
  }

  /** Tests only: set the clock the program reads when opened with testClock. */
  setTestNow(ns: bigint): void {
    if (this.testClockFd === null) throw new PortshaperError('PS_INTERNAL', 'data plane was not opened with testClock');
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
    if (this.closed) throw new PortshaperError('PS_INTERNAL', 'data plane used after close()');
  }

  /** Close our fds. Pins and tc filters keep the data plane enforcing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of this.mappings) m.unmap();
    closeObject(this.obj);
  }
}

/**
 * Remove our filters from every interface registered in the pinned maps and
 * forget the registrations, without loading a program. Returns the ifindexes
 * detached. Interfaces are looked up in the calling network namespace.
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
      ifaces.delete(ifindex);
      done.push(ifindex);
    }
    return done;
  } finally {
    ifaces.close();
  }
}

/**
 * Remove every pin under pinDir (counters and credit are lost). Used by
 * "detach --purge" and by tests; refuses anything that is not ours.
 */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  const names = readdirSync(pinDir).filter((n) => !BPFFS_OWN.has(n));
  for (const name of names) {
    if (!(MAP_NAMES as readonly string[]).includes(name)) {
      throw new PortshaperError('PS_PIN_FOREIGN', `${join(pinDir, name)} is not a portshaper pin; not removing ${pinDir}`, {
        hint: 'choose a pin directory used only by portshaper',
      });
    }
  }
  for (const name of names) unlinkSync(join(pinDir, name));
  try {
    rmdirSync(pinDir);
  } catch (err) {
    // A bpffs mounted on the pin directory itself stays (EBUSY), with its own entries.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EBUSY' && code !== 'ENOTEMPTY') throw err;
  }
}

/** Entries the kernel creates at the root of every bpffs mount (BPF preload iterators). */
const BPFFS_OWN = new Set(['maps.debug', 'progs.debug']);

export type { TcHookPoint };
