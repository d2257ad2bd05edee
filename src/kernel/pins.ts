/**
 * Pins: the bpffs directory our maps live in, the table of their shapes,
 * checking a pin before adopting it, and removing our pins. Nothing here
 * loads a program.
 */
import { existsSync, mkdirSync, readdirSync, rmdirSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CODE, PinLayoutError, PortshaperError } from '../errors.js';
import { closeFd, lookupElem, mapInfo, mountBpffs, objGet } from './libbpf.js';
import { PS, psBucket, psClient, psClientCfg, psClientKey, psCounters, psGlobal, psIface, psMeta, psPortTraffic, psRule, type PsMeta } from './layout.js';
import { u32 } from './maps.js';

/** Where pins live unless configured otherwise. */
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/portshaper';

const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * Every map of portshaper.bpf.c, pinned at <pinDir>/<name>: the one table of
 * their shapes, used to open them, to check pins before adopting them, and
 * to read pins without loading the program.
 */
export const MAP_SPECS = {
  ps_ports: { keySize: 4, valueSize: 4, perCpu: false, maxEntries: PS.PS_PORT_TABLE_SIZE },
  ps_rules: { keySize: 4, valueSize: psRule.size, perCpu: false, maxEntries: PS.PS_MAX_SLOTS },
  ps_buckets: { keySize: 4, valueSize: psBucket.size, perCpu: false, maxEntries: PS.PS_MAX_SLOTS },
  ps_counters: { keySize: 4, valueSize: psCounters.size, perCpu: true, maxEntries: PS.PS_MAX_SLOTS },
  ps_client_cfg: { keySize: 4, valueSize: psClientCfg.size, perCpu: false, maxEntries: PS.PS_MAX_CLIENT_RULES },
  ps_ifaces: { keySize: 4, valueSize: psIface.size, perCpu: false, maxEntries: PS.PS_MAX_IFACES },
  ps_global: { keySize: 4, valueSize: psGlobal.size, perCpu: true, maxEntries: PS.PS_MAX_IFACES * 2 },
  ps_meta: { keySize: 4, valueSize: psMeta.size, perCpu: false, maxEntries: 1 },
  ps_unmatched: { keySize: 4, valueSize: psPortTraffic.size, perCpu: true, maxEntries: PS.PS_UNMATCHED_SIZE },
  // Sized by the policy (clientTable) when created: maxEntries 0 = any.
  ps_clients: { keySize: psClientKey.size, valueSize: psClient.size, perCpu: false, maxEntries: 0 },
} as const;
export type MapName = keyof typeof MAP_SPECS;
/** The maps with u32 keys, reached through U32Map. */
export type U32MapName = Exclude<MapName, 'ps_clients'>;

/** Map names; each is pinned at <pinDir>/<name>. */
export const MAP_NAMES = Object.keys(MAP_SPECS) as MapName[];
export const U32_MAP_NAMES = MAP_NAMES.filter((n): n is U32MapName => n !== 'ps_clients');

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
export function openPinnedMap(pinDir: string, name: MapName): number {
  const spec = MAP_SPECS[name];
  const fd = objGet(join(pinDir, name));
  const info = mapInfo(fd, join(pinDir, name));
  if (info.keySize !== spec.keySize || info.valueSize !== spec.valueSize || (spec.maxEntries !== 0 && info.maxEntries !== spec.maxEntries)) {
    closeFd(fd);
    throw new PinLayoutError(
      pinDir,
      `unknown (${name} has ${info.keySize}-byte keys and ${info.valueSize}-byte values, ${info.maxEntries} entries)`,
      PS.PS_LAYOUT_VERSION,
    );
  }
  return fd;
}

/** max_entries of a pinned map of ours (after the shape check). */
export function pinnedEntries(pinDir: string, name: MapName): number {
  const fd = openPinnedMap(pinDir, name);
  try {
    return mapInfo(fd, join(pinDir, name)).maxEntries;
  } finally {
    closeFd(fd);
  }
}

/**
 * Check every existing pin's shape, then read the layout record: null if
 * there are no pins. A partial set (a crash while pinning) is fine: libbpf
 * pins the missing maps.
 */
export function readPinnedMeta(pinDir: string): PsMeta | null {
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

/**
 * Remove every pin under pinDir (counters and credit are lost). Used by
 * "detach --purge" and by tests; refuses anything that is not ours.
 */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  const names = readdirSync(pinDir).filter((n) => !BPFFS_OWN.has(n));
  for (const name of names) {
    if (!(MAP_NAMES as readonly string[]).includes(name)) {
      throw new PortshaperError(CODE.PS_PIN_FOREIGN, `${join(pinDir, name)} is not a portshaper pin; not removing ${pinDir}`, {
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
