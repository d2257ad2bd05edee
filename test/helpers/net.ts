/**
 * Network test fixtures: two network namespaces joined by a veth pair, plus
 * small typed wrappers around ip/tc/bpftool.
 *
 * Everything runs inside namespaces this module creates; nothing is added to
 * the host's namespace. Names carry the process id so that test files run in
 * parallel (vitest forks) never collide, and so that namespaces left behind by
 * a killed run can be recognised and swept (their pid is dead).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { which } from './tools.js';

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/** Options for run/startProcess/nsExec. */
export interface RunOptions {
  /** Hard limit; the process gets SIGKILL after it. Default 30 s. */
  timeoutMs?: number;
  /** Resolve instead of rejecting on a nonzero exit. */
  allowFailure?: boolean;
  /** Namespace the process runs in, so destroy() can kill it first. */
  ns?: string;
}

/** Outcome of a finished child process. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Error thrown when a command exits nonzero or times out; carries the command line and stderr. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const why = result.timedOut
      ? 'timed out'
      : result.signal
        ? `killed by ${result.signal}`
        : `exited with ${result.code}`;
    super(`\`${argv.join(' ')}\` ${why}: ${result.stderr.trim() || result.stdout.trim().slice(0, 500)}`);
    this.name = 'CommandError';
  }
}

/** A child process started by startProcess. */
export interface RunningProcess {
  readonly argv: readonly string[];
  readonly pid: number | undefined;
  /** Settles when the process has exited (never rejects; check code/timedOut). */
  readonly result: Promise<RunResult>;
  /** SIGTERM now, SIGKILL after graceMs if still alive; resolves on exit. */
  stop(graceMs?: number): Promise<RunResult>;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const liveChildren = new Map<ChildProcess, string | undefined>();

/** Spawn a long-lived child (argv, never a shell string) with a hard kill timeout. */
export function startProcess(cmd: string, args: readonly string[], opts: RunOptions = {}): RunningProcess {
  const argv = [cmd, ...args];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.set(child, opts.ns);
  ensureExitHandlers();
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const result = new Promise<RunResult>((resolve) => {
    child.on('error', (err) => {
      // spawn failure (ENOENT...): there is no exit event in some cases.
      stderr += String(err.message);
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ code: -1, signal: null, stdout, stderr, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
  return {
    argv,
    pid: child.pid,
    result,
    async stop(graceMs = 2000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const kill = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const r = await result;
        clearTimeout(kill);
        return r;
      }
      return result;
    },
  };
}

/** Run a command to completion; rejects with command line + stderr on nonzero exit or timeout. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const p = startProcess(cmd, args, opts);
  const r = await p.result;
  if (!opts.allowFailure && (r.code !== 0 || r.timedOut)) throw new CommandError(p.argv, r);
  return r;
}

/** Run argv inside a namespace via `ip netns exec` (gets the namespace's own /sys). */
export function nsExec(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw new Error('nsExec: empty argv');
  return run('ip', ['netns', 'exec', ns, cmd, ...rest], { ...opts, ns });
}

/**
 * argv prefixed with nsenter for the namespace: unlike `ip netns exec` this
 * keeps the host's /sys and bpffs, which a daemon that pins BPF objects needs.
 */
export function nsEnterArgv(ns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=/run/netns/${ns}`, '--', ...argv];
}

// ---------------------------------------------------------------------------
// Namespaces and cleanup
// ---------------------------------------------------------------------------

const NS_PREFIX = 'ps-';
const liveNamespaces = new Set<string>();
let exitHandlersInstalled = false;

/** Names of all network namespaces (`ip -j netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const r = await run('ip', ['-j', 'netns', 'list']);
  if (!r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((n) => n.name);
}

/** Whether a network namespace of this name exists. */
export async function namespaceExists(name: string): Promise<boolean> {
  return (await listNamespaces()).includes(name);
}

function killNamespacePidsSync(ns: string): void {
  for (const [child, childNs] of liveChildren) if (childNs === ns) child.kill('SIGKILL');
  // Also anything else left inside (e.g. a daemon spawned via nsEnterArgv):
  // a process keeps a deleted namespace, and its veth, alive.
  const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  for (const pid of (r.stdout ?? '').split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function deleteNamespaceSync(ns: string): void {
  killNamespacePidsSync(ns);
  spawnSync('ip', ['netns', 'del', ns], { timeout: 5000 });
  liveNamespaces.delete(ns);
}

/** Synchronously delete every namespace this process created and kill its children (safety net). */
export function destroyAllTopologiesSync(): void {
  for (const ns of [...liveNamespaces]) deleteNamespaceSync(ns);
  for (const child of liveChildren.keys()) child.kill('SIGKILL');
}

/** Delete every namespace this process created (for afterAll in suites that create several). */
export async function destroyAllTopologies(): Promise<void> {
  destroyAllTopologiesSync();
}

function onExit(): void {
  destroyAllTopologiesSync();
  if (bpfDir) rmSync(bpfDir, { recursive: true, force: true });
}

function ensureExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on('exit', onExit);
  // A forked vitest worker whose parent died (e.g. only the parent got
  // SIGINT) sees its IPC channel close; clean up rather than linger.
  if (process.send) process.once('disconnect', onExit);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      onExit();
      // With no other listener the default action (terminate) was replaced
      // by ours; restore it so the signal still ends the process.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Delete `ps-*-<pid>-*` namespaces whose creating process is dead: left by a
 * run that was SIGKILLed, where no exit handler could run.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const swept: string[] = [];
  for (const ns of await listNamespaces()) {
    const m = /^ps-[a-z]+\d*-(\d+)-[abr]$/.exec(ns);
    if (!m || pidAlive(Number(m[1]))) continue;
    // A namespace something still runs in is in use, whatever its name says.
    const pids = await run('ip', ['netns', 'pids', ns], { allowFailure: true });
    if (pids.stdout.trim()) continue;
    deleteNamespaceSync(ns);
    swept.push(ns);
  }
  return swept;
}

// ---------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------

/** Options for createTopology. */
export interface TopologyOptions {
  /**
   * 802.1Q VLAN id carried on the veth. This kernel has no CONFIG_VLAN_8021Q,
   * so tagging is done by tc BPF: egress pushes the tag (pref 1, before any
   * other filter) and ingress pops it (pref 65000, after the others) and
   * drops untagged frames, so passing traffic proves tags went end to end.
   * As with a real VLAN device on veth, the tag travels offloaded (skb
   * metadata, `__sk_buff.vlan_present`), not inside the packet bytes.
   */
  vlan?: number;
  /** MTU of both veth ends. */
  mtu?: number;
  /** Offload toggles via `ethtool -K` in each namespace; ignored with a warning without ethtool. */
  offloads?: { gso?: boolean; gro?: boolean; tso?: boolean };
}

/** Two namespaces joined by a veth pair, addressed with IPv4 and IPv6. */
export interface Topology {
  readonly nsA: string;
  readonly nsB: string;
  readonly ifA: string;
  readonly ifB: string;
  readonly ipA: string;
  readonly ipB: string;
  readonly ip6A: string;
  readonly ip6B: string;
  readonly ifindexA: number;
  readonly ifindexB: number;
  readonly vlan: number | undefined;
  /** Kill processes inside, delete both namespaces (and so the veth). Idempotent. */
  destroy(): Promise<void>;
}

/** Test-host addresses: RFC 2544 benchmark range and a ULA prefix, never routed outside. */
export const ADDR = {
  ipA: '198.18.0.1',
  ipB: '198.18.0.2',
  prefix4: 24,
  ip6A: 'fd00:5053::1',
  ip6B: 'fd00:5053::2',
  prefix6: 64,
} as const;

const IFNAMSIZ = 15;
const tagSeq = new Map<string, number>();
let swept = false;

/** Namespace and interface names for the n-th topology of a tag in this process. */
export function topologyNames(tag: string, seq = 0, pid = process.pid): { nsA: string; nsB: string; ifA: string; ifB: string } {
  // Letters only: tag, then digits, keeps "tag+seq" unambiguous.
  if (!/^[a-z]+$/.test(tag)) throw new Error(`topology tag must be lowercase letters, got ${JSON.stringify(tag)}`);
  const s = seq === 0 ? '' : String(seq);
  const tail = `${s}-${pid}a`;
  const t = tag.slice(0, Math.max(1, IFNAMSIZ - tail.length));
  return {
    nsA: `${NS_PREFIX}${tag}${s}-${pid}-a`,
    nsB: `${NS_PREFIX}${tag}${s}-${pid}-b`,
    ifA: `${t}${s}-${pid}a`,
    ifB: `${t}${s}-${pid}b`,
  };
}

/** Create namespaces ps-<tag>-<pid>-a/-b joined by a veth pair; destroy() it in afterAll. */
export async function createTopology(tag: string, opts: TopologyOptions = {}): Promise<Topology> {
  if (opts.vlan !== undefined && (!Number.isInteger(opts.vlan) || opts.vlan < 1 || opts.vlan > 4094)) {
    throw new Error(`VLAN id ${opts.vlan} out of range 1..4094`);
  }
  const seq = tagSeq.get(tag) ?? 0;
  tagSeq.set(tag, seq + 1);
  const names = topologyNames(tag, seq);
  const { nsA, nsB, ifA, ifB } = names;
  if (names.ifA.length > IFNAMSIZ) throw new Error(`interface name ${ifA} longer than ${IFNAMSIZ}`);
  ensureExitHandlers();
  if (!swept) {
    swept = true;
    await sweepStaleNamespaces();
  }
  const existing = await listNamespaces();
  if (existing.includes(nsA) || existing.includes(nsB)) {
    throw new Error(`namespace ${nsA} or ${nsB} already exists: is the tag "${tag}" used by two files?`);
  }

  let destroyed = false;
  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    deleteNamespaceSync(nsA);
    deleteNamespaceSync(nsB);
  };

  // Register before creating anything so a failure half-way still cleans up.
  liveNamespaces.add(nsA);
  liveNamespaces.add(nsB);
  try {
    await run('ip', ['netns', 'add', nsA]);
    await run('ip', ['netns', 'add', nsB]);
    // Created directly inside the namespaces: no name ever appears on the host.
    await run('ip', ['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', nsB]);
    const sides = [
      { ns: nsA, dev: ifA, v4: ADDR.ipA, v6: ADDR.ip6A },
      { ns: nsB, dev: ifB, v4: ADDR.ipB, v6: ADDR.ip6B },
    ];
    for (const s of sides) {
      if (opts.mtu !== undefined) await run('ip', ['-n', s.ns, 'link', 'set', 'dev', s.dev, 'mtu', String(opts.mtu)]);
      await run('ip', ['-n', s.ns, 'addr', 'add', `${s.v4}/${ADDR.prefix4}`, 'dev', s.dev]);
      // nodad: the address is usable at once instead of after ~1 s of DAD.
      await run('ip', ['-n', s.ns, '-6', 'addr', 'add', `${s.v6}/${ADDR.prefix6}`, 'dev', s.dev, 'nodad']);
      await run('ip', ['-n', s.ns, 'link', 'set', 'dev', 'lo', 'up']);
      await run('ip', ['-n', s.ns, 'link', 'set', 'dev', s.dev, 'up']);
    }
    if (opts.offloads) await setOffloads(sides, opts.offloads);
    if (opts.vlan !== undefined) {
      const obj = await bpfObject(opts.vlan);
      for (const s of sides) {
        await ensureClsact(s.ns, s.dev);
        await run('tc', ['-n', s.ns, 'filter', 'add', 'dev', s.dev, 'egress', 'pref', '1', 'handle', '1', 'bpf', 'da', 'obj', obj, 'sec', 'tc/vlan_push']);
        await run('tc', ['-n', s.ns, 'filter', 'add', 'dev', s.dev, 'ingress', 'pref', '65000', 'handle', '1', 'bpf', 'da', 'obj', obj, 'sec', 'tc/vlan_pop']);
      }
    }
    const ifindexA = await ifindex(nsA, ifA);
    const ifindexB = await ifindex(nsB, ifB);
    return { nsA, nsB, ifA, ifB, ipA: ADDR.ipA, ipB: ADDR.ipB, ip6A: ADDR.ip6A, ip6B: ADDR.ip6B, ifindexA, ifindexB, vlan: opts.vlan, destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** Sender, router and receiver: A —veth— R —veth— B, IPv4 only, R forwarding. */
export interface RoutedTopology {
  readonly nsA: string;
  readonly nsR: string;
  readonly nsB: string;
  /** A's device towards R, R's devices towards A and B, B's device towards R. */
  readonly ifA: string;
  readonly ifRA: string;
  readonly ifRB: string;
  readonly ifB: string;
  readonly ipA: string;
  readonly ipB: string;
  /** Kill processes inside, delete the three namespaces. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * A forwarded path (the edge-gateway case): traffic from A to B crosses R,
 * so a limit on R's egress towards B judges forwarded packets, which no
 * sender-side TCP small-queue limit holds back.
 */
export async function createRoutedTopology(tag: string): Promise<RoutedTopology> {
  const { nsA, nsB } = topologyNames(tag);
  const nsR = nsA.replace(/-a$/, '-r');
  const base = topologyNames(tag).ifA.slice(0, -1);
  const ifA = `${base}a`;
  const ifB = `${base}b`;
  const ifRA = `${base.slice(0, IFNAMSIZ - 2)}ra`;
  const ifRB = `${base.slice(0, IFNAMSIZ - 2)}rb`;
  ensureExitHandlers();
  let destroyed = false;
  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    for (const ns of [nsA, nsR, nsB]) deleteNamespaceSync(ns);
  };
  for (const ns of [nsA, nsR, nsB]) liveNamespaces.add(ns);
  try {
    for (const ns of [nsA, nsR, nsB]) await run('ip', ['netns', 'add', ns]);
    await run('ip', ['-n', nsA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifRA, 'netns', nsR]);
    await run('ip', ['-n', nsB, 'link', 'add', ifB, 'type', 'veth', 'peer', 'name', ifRB, 'netns', nsR]);
    const addrs: [string, string, string][] = [
      [nsA, ifA, '198.18.1.1/24'],
      [nsR, ifRA, '198.18.1.2/24'],
      [nsR, ifRB, '198.18.2.2/24'],
      [nsB, ifB, '198.18.2.1/24'],
    ];
    for (const [ns, dev, addr] of addrs) {
      await run('ip', ['-n', ns, 'addr', 'add', addr, 'dev', dev]);
      await run('ip', ['-n', ns, 'link', 'set', 'dev', dev, 'up']);
    }
    for (const ns of [nsA, nsR, nsB]) await run('ip', ['-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    await nsExec(nsR, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    await run('ip', ['-n', nsA, 'route', 'add', 'default', 'via', '198.18.1.2']);
    await run('ip', ['-n', nsB, 'route', 'add', 'default', 'via', '198.18.2.2']);
    return { nsA, nsR, nsB, ifA, ifRA, ifRB, ifB, ipA: '198.18.1.1', ipB: '198.18.2.1', destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** Run fn with a fresh topology and destroy it afterwards, also when fn throws. */
export async function withTopology<T>(tag: string, opts: TopologyOptions, fn: (t: Topology) => Promise<T>): Promise<T> {
  const t = await createTopology(tag, opts);
  try {
    return await fn(t);
  } finally {
    await t.destroy();
  }
}

async function setOffloads(
  sides: ReadonlyArray<{ ns: string; dev: string }>,
  offloads: NonNullable<TopologyOptions['offloads']>,
): Promise<void> {
  const args: string[] = [];
  for (const k of ['gso', 'gro', 'tso'] as const) {
    const v = offloads[k];
    if (v !== undefined) args.push(k, v ? 'on' : 'off');
  }
  if (args.length === 0) return;
  if (!which('ethtool')) {
    console.warn(`offloads ${args.join(' ')} not applied: ethtool missing (Debian package ethtool; \`make setup\`)`);
    return;
  }
  for (const s of sides) await nsExec(s.ns, ['ethtool', '-K', s.dev, ...args]);
}

/** ifindex of a device inside a namespace, read over netlink (`ip -j link show`), not /sys. */
export async function ifindex(ns: string, dev: string): Promise<number> {
  const r = await run('ip', ['-j', '-n', ns, 'link', 'show', 'dev', dev]);
  const [link] = JSON.parse(r.stdout) as Array<{ ifindex: number }>;
  if (!link) throw new Error(`no link ${dev} in ${ns}`);
  return link.ifindex;
}

// ---------------------------------------------------------------------------
// Counters and tc
// ---------------------------------------------------------------------------

/** Byte/packet/drop counters of one link. */
export interface LinkStats {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
}

/** Link counters from `ip -j -s -n NS link show dev IF` (stats64). */
export async function linkStats(ns: string, dev: string): Promise<LinkStats> {
  const r = await run('ip', ['-j', '-s', '-n', ns, 'link', 'show', 'dev', dev]);
  type Dir = { bytes: number; packets: number; dropped: number };
  const [link] = JSON.parse(r.stdout) as Array<{ stats64?: { rx: Dir; tx: Dir } }>;
  const s = link?.stats64;
  if (!s) throw new Error(`no stats64 for ${dev} in ${ns}`);
  return {
    rxBytes: s.rx.bytes,
    txBytes: s.tx.bytes,
    rxPackets: s.rx.packets,
    txPackets: s.tx.packets,
    rxDropped: s.rx.dropped,
    txDropped: s.tx.dropped,
  };
}

/** clsact hook of a device. */
export type TcHook = 'ingress' | 'egress';

/** One tc filter as parsed from `tc -j filter show`. */
export interface TcFilter {
  pref: number;
  protocol: string;
  kind: string;
  chain: number;
  handle: number | undefined;
  /** For kind bpf: "file.o:[section]" or the program's name. */
  bpfName: string | undefined;
  progId: number | undefined;
  progName: string | undefined;
  directAction: boolean;
  raw: Record<string, unknown>;
}

interface RawTcFilter {
  pref: number;
  protocol: string;
  kind: string;
  chain?: number;
  options?: {
    handle?: string;
    bpf_name?: string;
    'direct-action'?: boolean;
    prog?: { id?: number; name?: string };
  };
}

/** Filters on a clsact hook, from `tc -j -n NS filter show dev IF ingress|egress` ([] without clsact). */
export async function tcFilters(ns: string, dev: string, hook: TcHook): Promise<TcFilter[]> {
  const r = await run('tc', ['-j', '-n', ns, 'filter', 'show', 'dev', dev, hook]);
  if (!r.stdout.trim()) return [];
  const raw = JSON.parse(r.stdout) as RawTcFilter[];
  // tc prints one header entry per (pref, protocol) without options; skip it.
  return raw
    .filter((f) => f.options !== undefined)
    .map((f) => ({
      pref: f.pref,
      protocol: f.protocol,
      kind: f.kind,
      chain: f.chain ?? 0,
      handle: f.options?.handle !== undefined ? Number.parseInt(f.options.handle, 16) : undefined,
      bpfName: f.options?.bpf_name,
      progId: f.options?.prog?.id,
      progName: f.options?.prog?.name,
      directAction: f.options?.['direct-action'] === true,
      raw: f as unknown as Record<string, unknown>,
    }));
}

/** `tc -j -s qdisc show` of one device in a namespace. */
export async function qdiscs(ns: string, dev: string): Promise<Array<Record<string, unknown>>> {
  const r = await run('tc', ['-j', '-s', '-n', ns, 'qdisc', 'show', 'dev', dev]);
  return JSON.parse(r.stdout || '[]') as Array<Record<string, unknown>>;
}

/** HTB classes of a device as tc prints them, [handle, rate] (iproute2 6.1 prints classes as text even with -j). */
export async function htbClasses(ns: string, dev: string): Promise<[string, string][]> {
  const r = await run('tc', ['-n', ns, 'class', 'show', 'dev', dev]);
  return [...r.stdout.matchAll(/^class htb (\S+) .*?\brate (\S+)/gm)].map((m) => [m[1]!, m[2]!]);
}

/** Add the clsact qdisc to a device unless it is there already. */
export async function ensureClsact(ns: string, dev: string): Promise<void> {
  const r = await run('tc', ['-j', '-n', ns, 'qdisc', 'show', 'dev', dev]);
  const qdiscs = r.stdout.trim() ? (JSON.parse(r.stdout) as Array<{ kind: string }>) : [];
  if (!qdiscs.some((q) => q.kind === 'clsact')) await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', dev, 'clsact']);
}

/** Where a foreign filter sits; returned by addForeignFilter. */
export interface ForeignFilter {
  ns: string;
  dev: string;
  hook: TcHook;
  pref: number;
  handle: number;
}

/**
 * Add a harmless "someone else's" filter: a counting BPF program that returns
 * TC_ACT_UNSPEC (continue), standing in for matchall+gact, which this kernel
 * lacks. Its counters are read with foreignFilterStats (via bpftool).
 */
export async function addForeignFilter(
  ns: string,
  dev: string,
  hook: TcHook,
  where: { pref: number; handle: number },
): Promise<ForeignFilter> {
  const obj = await bpfObject(0);
  await ensureClsact(ns, dev);
  await run('tc', ['-n', ns, 'filter', 'add', 'dev', dev, hook, 'pref', String(where.pref), 'handle', `0x${where.handle.toString(16)}`, 'bpf', 'da', 'obj', obj, 'sec', 'tc/count']);
  return { ns, dev, hook, ...where };
}

/** Packets (skbs: a GSO/GRO super-packet counts once) and bytes the foreign filter saw. */
export async function foreignFilterStats(f: ForeignFilter): Promise<{ packets: number; bytes: number }> {
  const filter = (await tcFilters(f.ns, f.dev, f.hook)).find((x) => x.pref === f.pref && x.handle === f.handle);
  if (!filter || filter.progId === undefined) {
    throw new Error(`foreign filter pref ${f.pref} handle 0x${f.handle.toString(16)} not found on ${f.dev} ${f.hook} in ${f.ns}`);
  }
  const prog = JSON.parse((await run('bpftool', ['-j', 'prog', 'show', 'id', String(filter.progId)])).stdout) as { map_ids?: number[] };
  for (const id of prog.map_ids ?? []) {
    const map = JSON.parse((await run('bpftool', ['-j', 'map', 'show', 'id', String(id)])).stdout) as { name?: string };
    if (map.name !== 'ps_foreign') continue;
    const dump = JSON.parse((await run('bpftool', ['-j', 'map', 'dump', 'id', String(id)])).stdout) as Array<{ key: unknown; value: unknown }>;
    const values = dump.map((e) => decodeU64(e.value));
    return { packets: values[0] ?? 0, bytes: values[1] ?? 0 };
  }
  throw new Error(`foreign filter program ${filter.progId} has no ps_foreign map`);
}

/** Packets the foreign filter saw (see foreignFilterStats). */
export async function foreignFilterPackets(f: ForeignFilter): Promise<number> {
  return (await foreignFilterStats(f)).packets;
}

/** Delete all filters at one pref from a clsact hook (e.g. a foreign filter). */
export async function deleteFilter(ns: string, dev: string, hook: TcHook, pref: number): Promise<void> {
  await run('tc', ['-n', ns, 'filter', 'del', 'dev', dev, hook, 'pref', String(pref)]);
}

// bpftool prints array values either as BTF-formatted numbers or as
// little-endian hex byte strings, depending on version and BTF.
function decodeU64(v: unknown): number {
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) {
    let n = 0n;
    v.forEach((b, i) => (n |= BigInt(Number.parseInt(String(b), 16)) << BigInt(8 * i)));
    return Number(n);
  }
  throw new Error(`cannot decode map value ${JSON.stringify(v)}`);
}

// ---------------------------------------------------------------------------
// Helper BPF programs (VLAN emulation, foreign filter), built once per process
// ---------------------------------------------------------------------------

// Kept tiny and map-free except for the counter; VID is a compile-time
// constant because tc's loader cannot set read-only globals.
const HELPER_BPF_C = `
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} ps_foreign SEC(".maps");

SEC("tc/count")
int count(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&ps_foreign, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
	k = 1;
	v = bpf_map_lookup_elem(&ps_foreign, &k);
	if (v)
		__sync_fetch_and_add(v, skb->len);
	return TC_ACT_UNSPEC;
}

SEC("tc/vlan_push")
int vlan_push(struct __sk_buff *skb)
{
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), VID))
		return TC_ACT_SHOT;
	return TC_ACT_UNSPEC;
}

SEC("tc/vlan_pop")
int vlan_pop(struct __sk_buff *skb)
{
	if (!skb->vlan_present || (skb->vlan_tci & 0xfff) != VID)
		return TC_ACT_SHOT;
	bpf_skb_vlan_pop(skb);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
`;

let bpfDir: string | undefined;
const bpfObjects = new Map<number, Promise<string>>();

function bpfObject(vid: number): Promise<string> {
  let p = bpfObjects.get(vid);
  if (!p) {
    p = (async () => {
      if (!which('clang')) throw new Error('clang missing: needed to build the test BPF helpers (`make setup`)');
      bpfDir ??= mkdtempSync(join(tmpdir(), 'portshaper-net-'));
      const src = join(bpfDir, 'helpers.bpf.c');
      if (!existsSync(src)) writeFileSync(src, HELPER_BPF_C);
      const obj = join(bpfDir, `helpers-${vid}.o`);
      // Debian keeps asm/ under the multiarch include directory.
      const arch = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
      const multiarch = `/usr/include/${arch}-linux-gnu`;
      const inc = existsSync(multiarch) ? ['-I', multiarch] : [];
      await run('clang', ['-O2', '-g', '-target', 'bpf', `-DVID=${vid}`, ...inc, '-c', src, '-o', obj], { timeoutMs: 60_000 });
      return obj;
    })();
    bpfObjects.set(vid, p);
  }
  return p;
}
