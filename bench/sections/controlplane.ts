/**
 * Section 4: control plane. Time to put 1, 1,000 and 65,536 per-port limits
 * into the kernel: portshaper from a policy file (parse, validate, plan,
 * apply) and from a validated policy (plan, apply), against `nft -f` of the
 * same limits as an nftables map of named limits (and as linear rules) and
 * `tc -batch` of the same u32 filters; and the time to read every rule's
 * counters.
 */
import { applyPlan } from '../../src/kernel/apply.js';
import { CounterRangeReader } from '../../src/kernel/counters.js';
import type { DesiredState } from '../../src/kernel/desired.js';
import { PS, psCounters } from '../../src/kernel/layout.js';
import { mirrorOf, reconcileFrom, type KernelMirror } from '../../src/kernel/reconcile.js';
import { parsePolicy, planPolicy, validatePolicy, type ValidPolicy } from '../../src/policy/index.js';
import { ensureClsact, nsExec, run } from '../../test/helpers/net.js';
import { clearRules, ends, setRules, type BenchContext } from '../lib/context.js';
import { nftFile, tempFile, timeMs } from '../lib/host.js';
import { runInterleaved, type Case } from '../lib/runner.js';
import { NFT_TABLES, nftLinear, nftMap, policyYaml, ruleSet, U32_PRIO, u32Batch, type PortRule } from '../lib/rulesets.js';
import { pairedRatio, summarize, type Summary } from '../lib/stats.js';

/** The limit of every generated rule: the project's default burst at 100 Mbit/s. */
const RATE = { text: '100mbit', bps: 100e6 };
const BURST = { text: '300ms', ns: 300_000_000 };

/** Milliseconds of one operation at one rule count. */
export interface ControlRow {
  operation: string;
  rules: number;
  ms: Summary;
  /** This time / `nft -f` of the map at the same count, paired by repetition. */
  vsNftMap: Summary;
  /** Milliseconds of each stage, for operations made of several. */
  stages?: Record<string, Summary>;
}

export interface ControlPlaneResult {
  counts: number[];
  operations: { id: string; description: string }[];
  rows: ControlRow[];
  notMeasured: { operation: string; why: string }[];
  failures: Record<string, string[]>;
}

/** Milliseconds of one operation, and of its stages when it reports them. */
type Timed = { ms: number; stages?: Record<string, number> };

interface Operation {
  id: string;
  description: string;
  /** Untimed preparation (e.g. writing the input file, emptying the maps). */
  prepare(rules: readonly PortRule[]): Promise<void>;
  /** The timed work; may return the milliseconds of its stages. */
  timed(): Promise<Record<string, number> | void>;
  /** Untimed: remove what the operation created. */
  undo(): Promise<void>;
}

/** Time every operation at every rule count. */
export async function runControlPlane(ctx: BenchContext): Promise<ControlPlaneResult> {
  const counts = ctx.quick ? [1, 65_536] : [1, 1_000, 65_536];
  const ops = operations(ctx);
  const caseId = (op: Operation, n: number) => `control ${op.id} x ${n}`;
  const cases: Case<Timed>[] = counts.flatMap((n) => {
    const rules = ruleSet(n);
    return ops.map((op) => ({
      id: caseId(op, n),
      setup: () => op.prepare(rules),
      measure: async () => {
        let stages: Record<string, number> | undefined;
        const ms = await timeMs(async () => {
          stages = (await op.timed()) ?? undefined;
        });
        return stages ? { ms, stages } : { ms };
      },
      teardown: () => op.undo(),
    }));
  });
  const r = await runInterleaved(cases, ctx.reps);
  const nftMapOp = ops.find((o) => o.id === 'nft -f map')!;
  return {
    counts,
    operations: ops.map((o) => ({ id: o.id, description: o.description })),
    rows: counts.flatMap((n) =>
      ops.map((op) => {
        const mine = r.samples.get(caseId(op, n)) ?? [];
        const row: ControlRow = {
          operation: op.id,
          rules: n,
          ms: summarize(mine, (v) => v.ms),
          vsNftMap: pairedRatio(mine, r.samples.get(caseId(nftMapOp, n)) ?? [], (v) => v.ms),
        };
        const names = Object.keys(mine[0]?.value.stages ?? {});
        if (names.length) row.stages = Object.fromEntries(names.map((k) => [k, summarize(mine, (v) => v.stages?.[k])]));
        return row;
      }),
    ),
    // An API change → kernel is measured on the real agent process now (the agent section), not here.
    notMeasured: [],
    failures: Object.fromEntries(r.failures),
  };
}

/** Every counter field, in the order ps_counters holds them. */
const COUNTER_FIELDS = psCounters.fields.map((f) => f.offset);

function operations(ctx: BenchContext): Operation[] {
  const { sender } = ends(ctx.topo);
  const counterReader = new CounterRangeReader(ctx.dp);
  let counterOut: Float64Array | undefined;
  const env = { interfaceExists: () => true };
  let yaml = '';
  let valid: ValidPolicy | undefined;
  let slots: number[] = [];
  let file = '';

  const validated = (result: ReturnType<typeof validatePolicy>): ValidPolicy => {
    if (!result.policy) throw new Error(`generated policy invalid: ${result.diagnostics.map((d) => d.message).join('; ').slice(0, 500)}`);
    return result.policy;
  };
  const validate = (text: string): ValidPolicy => validated(validatePolicy(parsePolicy(text, 'bench.yaml'), env));
  // mode: police, because 65,536 shaped rules would need more than the 65,533 HTB classes a device holds.
  const policyText = (rules: readonly PortRule[]) => policyYaml(rules, sender.ifname, RATE.text, BURST.text, 'police');
  // One rule's rate, alternated between two values so that every repetition changes it.
  let desired: DesiredState | undefined;
  let mirror: KernelMirror | undefined;
  let flip = false;
  const oneRuleChanged = (): DesiredState => {
    flip = !flip;
    // A copy with one bucket replaced (as replanRule makes it); destructuring 65,536 entries with a rest
    // pattern cost ~20 ms, more than the diff being measured.
    const buckets = desired!.buckets.slice();
    buckets[0] = { ...buckets[0]!, rateBps: flip ? RATE.bps / 2 : RATE.bps };
    return { ...desired!, buckets };
  };
  const applyPolicy = (policy: ValidPolicy) => {
    slots = [...setRules(ctx.dp, planPolicy(policy)).slots.values()];
  };
  const nft = (id: string, table: string, render: (rules: readonly PortRule[]) => string, description: string): Operation => ({
    id,
    description,
    async prepare(rules) {
      file = tempFile(`${table}.nft`, render(rules));
    },
    timed: () => nftFile(sender.ns, file),
    async undo() {
      await nsExec(sender.ns, ['nft', 'delete', 'table', 'netdev', table]);
    },
  });

  return [
    {
      id: 'portshaper policy file',
      description: 'portshaper: YAML text → parse → validate → plan → apply to the maps (one process, no attach)',
      async prepare(rules) {
        clearRules(ctx.dp);
        yaml = policyText(rules);
      },
      async timed() {
        const t0 = performance.now();
        const parsed = parsePolicy(yaml, 'bench.yaml');
        const t1 = performance.now();
        const policy = validated(validatePolicy(parsed, env));
        const t2 = performance.now();
        const desired = planPolicy(policy);
        const t3 = performance.now();
        slots = [...setRules(ctx.dp, desired).slots.values()];
        const t4 = performance.now();
        return { parse: t1 - t0, validate: t2 - t1, plan: t3 - t2, apply: t4 - t3 };
      },
      async undo() {
        clearRules(ctx.dp);
      },
    },
    {
      id: 'portshaper plan+apply',
      description: 'portshaper: a validated policy → plan → apply (what a REST change or reload runs after validation)',
      async prepare(rules) {
        clearRules(ctx.dp);
        valid = validate(policyText(rules));
      },
      async timed() {
        applyPolicy(valid!);
      },
      async undo() {},
    },
    {
      id: 'portshaper one-rule change',
      description: 'portshaper: one rule\'s rate changed with N rules in force → diffed against the mirror of the previous plan → written (what an API change or reload runs after validation and planning)',
      async prepare(rules) {
        clearRules(ctx.dp);
        desired = planPolicy(validate(policyText(rules)));
        flip = false;
        mirror = mirrorOf(desired, setRules(ctx.dp, desired), PS.PS_MAX_SLOTS);
      },
      async timed() {
        const { plan, next } = reconcileFrom(mirror!, oneRuleChanged());
        applyPlan(ctx.dp, plan);
        mirror = next;
        if (plan.rules.length !== 1 || plan.portIndexes.length !== 0) throw new Error(`one-rule change wrote ${plan.rules.length} rules, ${plan.portIndexes.length} ports`);
      },
      async undo() {
        clearRules(ctx.dp);
      },
    },
    {
      id: 'portshaper one-rule change, full reconcile',
      description: 'portshaper: the same change diffed against a snapshot of the maps (every slot and the 2M-entry port table read), as before the mirror; the first apply after adoption still does this',
      async prepare(rules) {
        clearRules(ctx.dp);
        desired = planPolicy(validate(policyText(rules)));
        flip = false;
        setRules(ctx.dp, desired);
      },
      async timed() {
        const plan = setRules(ctx.dp, oneRuleChanged());
        if (plan.rules.length !== 1) throw new Error(`one-rule change wrote ${plan.rules.length} rules`);
      },
      async undo() {
        clearRules(ctx.dp);
      },
    },
    {
      id: 'portshaper read counters',
      description: 'portshaper: every rule slot\'s 12 counter fields, read the way the agent reads them (CounterRangeReader: batch lookups into kept buffers, per-CPU values summed)',
      async prepare(rules) {
        clearRules(ctx.dp);
        applyPolicy(validate(policyText(rules)));
      },
      async timed() {
        const end = slots.reduce((m, s) => Math.max(m, s), 0) + 1;
        const out = (counterOut = counterOut && counterOut.length >= end * COUNTER_FIELDS.length ? counterOut : new Float64Array(end * COUNTER_FIELDS.length));
        const got = counterReader.read(0, end, COUNTER_FIELDS, out);
        if (got < end) throw new Error(`read ${got} counter slots of ${end}`);
      },
      async undo() {
        clearRules(ctx.dp);
        slots = [];
      },
    },
    nft('nft -f map', NFT_TABLES.map, (rules) => nftMap(rules, sender.ifname, { rateBps: RATE.bps, burstNs: BURST.ns }), '`nft -f`: N named limits and a port → limit map (one transaction, process start included)'),
    nft('nft -f linear', NFT_TABLES.linear, (rules) => nftLinear(rules, sender.ifname, { rateBps: RATE.bps, burstNs: BURST.ns }), '`nft -f`: N `limit rate over` rules in one chain'),
    {
      id: 'tc -batch u32',
      description: '`tc -batch`: N u32 filters in one priority on clsact egress (classify only: no police action here)',
      async prepare(rules) {
        await ensureClsact(sender.ns, sender.ifname);
        file = tempFile('u32.batch', u32Batch(rules, sender.ifname));
      },
      async timed() {
        await run('tc', ['-n', sender.ns, '-batch', file], { timeoutMs: 300_000 });
      },
      async undo() {
        await run('tc', ['-n', sender.ns, 'filter', 'del', 'dev', sender.ifname, 'egress', 'prio', String(U32_PRIO)]);
      },
    },
  ];
}
