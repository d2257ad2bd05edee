/**
 * Section 3: per-packet cost and its growth with the rule count. For 1 to
 * 65,536 per-port limits: portshaper's run time per packet by the kernel's
 * own accounting (kernel.bpf_stats_enabled), next to an empty cls_bpf
 * program; and for every system (portshaper, linear nftables rules, an
 * nftables map of named limits, linear u32 filters) the small-packet rate and
 * the machine's CPU time per packet sent, against no program at all.
 *
 * The measured traffic matches the last rule of each set (worst case for a
 * linear list) and is never limited (the rate is far above it), so every
 * packet pays the full lookup and the bucket. portshaper is measured policing
 * and shaping (the measured rule in mode: shape, its HTB class under our root).
 *
 * A multi-port workload then sends to random remote ports (a rule and a
 * bucket per port), so that the lookups spread over the whole table and its
 * buckets: the cache effects one destination port never shows.
 */
import type { DesiredInterface, DesiredState } from '../../src/kernel/desired.js';
import { inNetns } from '../../src/kernel/netns.js';
import { desiredFrom } from '../../test/helpers/dataplane.js';
import { ensureClsact, nsExec, run } from '../../test/helpers/net.js';
import { attachEmpty, detachEmpty, nsPerRun, progStats, withBpfStats, type ProgStats } from '../lib/bpfstats.js';
import { attachAt, clearRules, detachFrom, ends, removeClsact, setRules, type BenchContext, type End } from '../lib/context.js';
import { ControlledDevice } from '../lib/controlled.js';
import { nftFile, tempFile } from '../lib/host.js';
import { machineBusyNs } from '../lib/load.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { desiredState, NFT_TABLES, nftLinear, nftMap, ruleSet, U32_PRIO, u32Batch, type LimitParams, type PortRule } from '../lib/rulesets.js';
import { pairedRatio, summarize, type Sample, type Summary } from '../lib/stats.js';
import { spray } from '../lib/spray.js';
import { SMALL_LEN, TEST_PORT, udpRun } from '../lib/traffic.js';

/** Far above what a veth carries here: the bucket is charged, never empty. */
const NEVER_LIMITING: LimitParams = { rateBps: 80e9, burstNs: 10_000_000 };

/** What one small-packet run gives. */
interface PacketRun {
  receivedPps: number;
  /** Busy CPU time of the whole machine per datagram sent (ns). */
  cpuNsPerPacket: number;
  /** BPF run time per packet of the system's program, when it is one. */
  bpfNsPerPacket?: number;
}

/**
 * u32 filters are measured up to this count: inserting them is quadratic
 * (16 s for 65,536 on a quiet machine here, minutes on a busy one), and the
 * linear cost is plain well before. The control-plane section times 65,536.
 */
const U32_MAX_RULES = 10_000;

/** A system under test: how to install a rule set and, for BPF, which program to watch. */
interface System {
  id: string;
  description: string;
  /** Largest rule count measured (default: all). */
  maxRules?: number;
  install(rules: readonly PortRule[]): Promise<void>;
  remove(): Promise<void>;
  /** Program id to read run statistics of (BPF systems). */
  programId?(): Promise<number>;
}

/** One system at one rule count. */
export interface PerPacketRow {
  system: string;
  rules: number;
  kpps: Summary;
  cpuNsPerPacket: Summary;
  /** CPU per packet minus that of no program, paired by repetition. */
  addedCpuNs: Summary;
  /** pps / pps of no program, paired by repetition. */
  ppsRatio: Summary;
  bpfNsPerPacket?: Summary;
}

export interface PerPacketResult {
  counts: number[];
  seconds: number;
  systems: { id: string; description: string }[];
  /** Baselines measured in every repetition. */
  noProgram: { kpps: Summary; cpuNsPerPacket: Summary };
  emptyProgram: { kpps: Summary; cpuNsPerPacket: Summary; bpfNsPerPacket: Summary };
  /** portshaper's run time on traffic no rule names (parse and lookup only). */
  portshaperUnmatchedNs: Summary;
  rows: PerPacketRow[];
  /** Absent from runs made before the multi-port workload existed. */
  multiport?: MultiPortResult;
  failures: Record<string, string[]>;
}

/** One multi-port case: BPF time per packet and the rate the sender reached. */
export interface MultiPortRow {
  program: string;
  rules: number;
  ports: 'one' | 'random';
  bpfNsPerPacket: Summary;
  /** bpfNsPerPacket minus the empty program's with the same traffic, paired by repetition. */
  addedNs: Summary;
  kppsSent: Summary;
}

export interface MultiPortResult {
  seconds: number;
  rows: MultiPortRow[];
}

/** Measure every system at every rule count, with BPF run-time statistics on. */
export async function runPerPacket(ctx: BenchContext): Promise<PerPacketResult> {
  return withBpfStats(() => measure(ctx));
}

async function measure(ctx: BenchContext): Promise<PerPacketResult> {
  const counts = ctx.quick ? [1, 65_536] : [1, 100, 1_000, 10_000, 65_536];
  const seconds = 2;
  const { sender } = ends(ctx.topo);
  const systems = makeSystems(ctx);

  const packetRun = async (programId?: number): Promise<PacketRun> => {
    const before: ProgStats | undefined = programId !== undefined ? await progStats(programId) : undefined;
    const busy0 = machineBusyNs();
    const r = await udpRun(ctx.topo, seconds, 0, SMALL_LEN);
    const busy1 = machineBusyNs();
    const after = programId !== undefined ? await progStats(programId) : undefined;
    return {
      receivedPps: r.receivedPps,
      cpuNsPerPacket: (busy1 - busy0) / Math.max(1, r.sentPackets),
      bpfNsPerPacket: before && after ? nsPerRun(before, after) : undefined,
    };
  };

  let emptyId = 0;
  const cases: Case<PacketRun>[] = [
    { id: 'perpacket no program', setup: () => removeClsact(sender), measure: () => packetRun() },
    {
      id: 'perpacket empty cls_bpf',
      setup: async () => {
        emptyId = await attachEmpty(sender);
      },
      measure: () => packetRun(emptyId),
      teardown: () => detachEmpty(sender),
    },
  ];
  // Where portshaper's time goes: the same program on a port no rule names
  // (parse and lookup, no bucket), measured beside the rest.
  const unmatched = systems.find((s) => s.id === 'portshaper police')!;
  cases.push({
    id: 'perpacket portshaper, port without a rule',
    setup: () => unmatched.install([{ protocol: 'udp', port: TEST_PORT + 1 }]),
    measure: async () => packetRun(await unmatched.programId!()),
    teardown: () => unmatched.remove(),
  });
  const caseId = (s: System, n: number) => `perpacket ${s.id} x ${n}`;
  for (const n of counts) {
    const rules = ruleSet(n);
    for (const s of systems) {
      if (n > (s.maxRules ?? Infinity)) continue;
      cases.push({
        id: caseId(s, n),
        setup: () => s.install(rules),
        measure: async () => packetRun(s.programId ? await s.programId() : undefined),
        teardown: () => s.remove(),
      });
    }
  }
  const multi = multiPortCases(ctx);
  const r = await runInterleaved<PacketRun>([...cases, ...multi.cases], ctx.reps);
  const none = r.samples.get('perpacket no program') ?? [];
  const empty = r.samples.get('perpacket empty cls_bpf') ?? [];
  const kpps = (v: PacketRun) => v.receivedPps / 1e3;
  const cpu = (v: PacketRun) => v.cpuNsPerPacket;
  return {
    counts,
    seconds,
    systems: systems.map((s) => ({ id: s.id, description: s.description })),
    noProgram: { kpps: summarize(none, kpps), cpuNsPerPacket: summarize(none, cpu) },
    emptyProgram: { kpps: summarize(empty, kpps), cpuNsPerPacket: summarize(empty, cpu), bpfNsPerPacket: summarize(empty, (v) => v.bpfNsPerPacket) },
    portshaperUnmatchedNs: summarize(r.samples.get('perpacket portshaper, port without a rule') ?? [], (v) => v.bpfNsPerPacket),
    rows: counts.flatMap((n) =>
      systems.filter((s) => n <= (s.maxRules ?? Infinity)).map((s) => {
        const mine = r.samples.get(caseId(s, n)) ?? [];
        const added = mine.map((m) => {
          const base = none.find((x) => x.rep === m.rep);
          return { ...m, value: base ? m.value.cpuNsPerPacket - base.value.cpuNsPerPacket : NaN, load: { ...m.load, busy: m.load.busy || !!base?.load.busy } };
        });
        const row: PerPacketRow = {
          system: s.id,
          rules: n,
          kpps: summarize(mine, kpps),
          cpuNsPerPacket: summarize(mine, cpu),
          addedCpuNs: summarize(added, (v) => v),
          ppsRatio: pairedRatio(mine, none, (v) => v.receivedPps),
        };
        if (s.programId) row.bpfNsPerPacket = summarize(mine, (v) => v.bpfNsPerPacket);
        return row;
      }),
    ),
    multiport: multi.summarize(r.samples),
    failures: Object.fromEntries(r.failures),
  };
}

/** Seconds of one multi-port run. */
const SPRAY_SECONDS = 2;

/**
 * The multi-port workload: UDP from one source port to one destination port
 * or to a random one per datagram, through the sender's egress, against
 * remote-port rules (the egress client limit: the local lookup misses first).
 * The empty program with the same traffic is the floor.
 */
function multiPortCases(ctx: BenchContext) {
  const { sender } = ends(ctx.topo);
  const remoteRules = (count: 1 | 65_535): DesiredState =>
    desiredFrom([
      {
        name: 'client',
        port: count === 1 ? TEST_PORT : [1, 65_535],
        protocol: 'udp',
        direction: 'egress',
        side: 'remote',
        perPort: count !== 1,
        ...NEVER_LIMITING,
      },
    ]);
  const sprayRun = async (ports: 'one' | 'random', programId: number): Promise<PacketRun> => {
    const before = await progStats(programId);
    const r = await spray(sender.ns, ctx.topo.ipA, SPRAY_SECONDS, SMALL_LEN, ports === 'one' ? TEST_PORT : 'random');
    const after = await progStats(programId);
    return { receivedPps: r.sentPackets / r.seconds, cpuNsPerPacket: NaN, bpfNsPerPacket: nsPerRun(before, after) };
  };
  type Variant = { program: string; rules: number; ports: 'one' | 'random' };
  const variants: Variant[] = [
    { program: 'empty cls_bpf', rules: 0, ports: 'one' },
    { program: 'empty cls_bpf', rules: 0, ports: 'random' },
    { program: 'portshaper police', rules: 1, ports: 'one' },
    { program: 'portshaper police', rules: 65_535, ports: 'one' },
    { program: 'portshaper police', rules: 65_535, ports: 'random' },
  ];
  const id = (v: Variant) => `perpacket multiport ${v.program} x ${v.rules}, ${v.ports === 'one' ? 'one port' : 'random ports'}`;
  let emptyId = 0;
  const cases: Case<PacketRun>[] = variants.map((v) =>
    v.rules === 0
      ? {
          id: id(v),
          setup: async () => {
            emptyId = await attachEmpty(sender);
          },
          measure: () => sprayRun(v.ports, emptyId),
          teardown: () => detachEmpty(sender),
        }
      : {
          id: id(v),
          setup: async () => {
            setRules(ctx.dp, remoteRules(v.rules as 1 | 65_535));
            attachAt(ctx.dp, sender, { ingress: false, egress: true });
          },
          measure: async () => sprayRun(v.ports, inNetns(sender.ns, () => ctx.dp.attached(sender.ifindex, sender.ifname)).egress),
          teardown: async () => {
            detachFrom(ctx.dp, sender);
            clearRules(ctx.dp);
          },
        },
  );
  return {
    cases,
    summarize(samples: Map<string, Sample<PacketRun>[]>): MultiPortResult {
      return {
        seconds: SPRAY_SECONDS,
        rows: variants.map((v) => {
          const mine = samples.get(id(v)) ?? [];
          const floor = samples.get(id({ program: 'empty cls_bpf', rules: 0, ports: v.ports })) ?? [];
          const added = mine.map((m) => {
            const base = floor.find((x) => x.rep === m.rep);
            return { ...m, value: base ? (m.value.bpfNsPerPacket ?? NaN) - (base.value.bpfNsPerPacket ?? NaN) : NaN, load: { ...m.load, busy: m.load.busy || !!base?.load.busy } };
          });
          return {
            ...v,
            bpfNsPerPacket: summarize(mine, (x) => x.bpfNsPerPacket),
            addedNs: summarize(added, (x) => x),
            kppsSent: summarize(mine, (x) => x.receivedPps / 1e3),
          };
        }),
      };
    },
  };
}

/** The interface entry the planner would write for the sender's egress with these shaped buckets. */
function shapedInterface(end: End, desired: DesiredState): DesiredInterface {
  return {
    name: end.ifname,
    profile: 0,
    ingress: false,
    egress: true,
    remote: { ingress: false, egress: false },
    shaped: desired.buckets.filter((b) => b.mode === 'shape').map((b) => b.key),
    replaceQdisc: false,
    countUnmatched: false,
  };
}

function makeSystems(ctx: BenchContext): System[] {
  const { sender } = ends(ctx.topo);
  const nft = (table: string, render: (rules: readonly PortRule[]) => string): Pick<System, 'install' | 'remove'> => ({
    async install(rules) {
      await nftFile(sender.ns, tempFile(`${table}.nft`, render(rules)));
    },
    async remove() {
      await nsExec(sender.ns, ['nft', 'delete', 'table', 'netdev', table]);
    },
  });
  const shaper = new ControlledDevice(ctx.dp, sender);
  const egressProgram = async () => inNetns(sender.ns, () => ctx.dp.attached(sender.ifindex, sender.ifname)).egress;
  return [
    {
      id: 'portshaper police',
      description: 'portshaper on tc egress of the sender: array lookup by port, one bucket per rule, mode: police',
      async install(rules) {
        setRules(ctx.dp, desiredState(rules, NEVER_LIMITING));
        attachAt(ctx.dp, sender, { ingress: false, egress: true });
      },
      async remove() {
        detachFrom(ctx.dp, sender);
        clearRules(ctx.dp);
      },
      programId: egressProgram,
    },
    {
      id: 'portshaper shape',
      description:
        "portshaper through the controller: the measured rule in mode: shape (the program sets skb->priority to its HTB class " +
        'under our root, and keeps its virtual queue), the other N−1 policing (a device holds 65,533 HTB classes, so 65,536 ' +
        'shaped rules cannot exist; the table size and lookup are the same)',
      async install(rules) {
        const desired = desiredState(rules, NEVER_LIMITING, 'shape');
        shaper.enforce({ ...desired, interfaces: [shapedInterface(sender, desired)] });
      },
      async remove() {
        shaper.release();
      },
      programId: egressProgram,
    },
    {
      id: 'nft linear',
      description: 'nftables netdev egress chain, one `udp sport N limit rate over … drop` rule per port',
      ...nft(NFT_TABLES.linear, (rules) => nftLinear(rules, sender.ifname, NEVER_LIMITING)),
    },
    {
      id: 'nft map',
      description: 'nftables netdev egress, one named limit per port and `limit name udp sport map @…`',
      ...nft(NFT_TABLES.map, (rules) => nftMap(rules, sender.ifname, NEVER_LIMITING)),
    },
    {
      id: 'u32 linear',
      description: `u32 filters on tc clsact egress, one per port, in one priority (match only: no police/gact here); up to ${U32_MAX_RULES.toLocaleString('en-US')} (insertion is quadratic)`,
      maxRules: U32_MAX_RULES,
      async install(rules) {
        await ensureClsact(sender.ns, sender.ifname);
        await run('tc', ['-n', sender.ns, '-batch', tempFile('u32.batch', u32Batch(rules, sender.ifname))], { timeoutMs: 300_000 });
      },
      async remove() {
        await run('tc', ['-n', sender.ns, 'filter', 'del', 'dev', sender.ifname, 'egress', 'prio', String(U32_PRIO)]);
      },
    },
  ];
}
