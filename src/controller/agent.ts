/**
 * The node agent: loads the policy, enforces it through the data plane,
 * reloads it on SIGHUP or when the file changes, and keeps interfaces
 * attached. Stopping leaves enforcement in place unless asked to detach:
 * an edge host must not lose its limits because the agent stopped.
 */
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { formatDiagnostic, PolicyError, type Diagnostic } from '../errors.js';
import { applyPlan, snapshot } from '../kernel/apply.js';
import { DataPlane } from '../kernel/dataplane.js';
import { libbpfVersion } from '../kernel/libbpf.js';
import type { DesiredBucket, DesiredState } from '../kernel/desired.js';
import { ifNameToIndex } from '../kernel/libc.js';
import { bucketsOfRule, readPolicyText, parsePolicy, planPolicy, replanRule, validateOne, validatePolicy, type PolicyRule, type ValidPolicy } from '../policy/index.js';
import { InterfaceSync } from './interfaces.js';
import { PS } from '../kernel/layout.js';
import { isNoop, mirrorOf, reconcile, reconcileFrom, type KernelMirror, type WritePlan } from '../kernel/reconcile.js';
import { removeStaleTempFiles } from './persist.js';
import { classPlan } from './shaping.js';
import { resolvePolicySource, type PolicySource } from './source.js';

export interface AgentOptions {
  policyPath: string;
  /** With a node name, node.<name>.yaml beside policyPath is read instead when it exists (NODE_NAME on a fleet). */
  nodeName?: string;
  log: Logger;
  /** BPF object to load (default: the one shipped with the package). */
  objectPath?: string;
  /** How often interfaces are re-checked (re-attach latency). Default 500 ms. */
  interfacePollMs?: number;
  /** Debounce for file-change reloads. Default 200 ms. */
  watchDebounceMs?: number;
}

/** Outcome of applying a policy. */
export interface ApplyResult {
  buckets: number;
  ruleWrites: number;
  portWrites: number;
  released: number;
  ms: number;
}

/** What the agent enforces: the policy, its plan, each bucket's slot, derived once per apply. */
export interface AgentState {
  policy: ValidPolicy;
  desired: DesiredState;
  slots: Map<string, number>;
  /** The buckets of each rule, by rule name (readers aggregate per rule). */
  bucketsByRule: Map<string, DesiredBucket[]>;
  /** sha256 of the policy file text in force. */
  hash: string;
  /** Warnings of that policy (an API write reports them). */
  warnings: Diagnostic[];
}

/** What an apply may be told beyond the policy: its warnings, and the one rule an API write changed. */
export interface ApplyExtra {
  warnings?: Diagnostic[];
  change?: RuleChange;
}

/** One rule changed by an API write: lets the plan and state follow at the cost of that rule. */
export interface RuleChange {
  before: PolicyRule;
  after: PolicyRule;
}

/** Outcomes of reloads, of a changed file or on SIGHUP (exported as portshaper_policy_reloads_total). */
export interface ReloadCounts {
  applied: number;
  /** The policy was invalid: the running one stayed in force. */
  rejected: number;
  /** Applying it failed (kernel error). */
  failed: number;
}

/** The state for an applied plan, with what readers derive from it computed once. */
export function agentState(
  policy: ValidPolicy,
  desired: DesiredState,
  slots: Map<string, number>,
  hash: string,
  warnings: Diagnostic[] = [],
  changed?: { previous: AgentState; rule: string },
): AgentState {
  if (changed) {
    // One rule's limits changed (replanRule): only its entry differs. The map is handed on from the state
    // it replaces (nothing reads a replaced state's buckets), so the change costs that rule, not a copy.
    const bucketsByRule = changed.previous.bucketsByRule;
    bucketsByRule.set(changed.rule, bucketsOfRule(desired, changed.rule));
    return { policy, desired, slots, bucketsByRule, hash, warnings };
  }
  const bucketsByRule = new Map<string, DesiredBucket[]>();
  for (const b of desired.buckets) {
    const list = bucketsByRule.get(b.rule);
    if (list) list.push(b);
    else bucketsByRule.set(b.rule, [b]);
  }
  return { policy, desired, slots, bucketsByRule, hash, warnings };
}

/** A performed write plan, and the mirror of the kernel it leaves (the base of the next diff). */
export type Enforced = WritePlan & { mirror: KernelMirror };

/**
 * Bring the kernel to a desired state: diff against the mirror of the
 * previous apply (or, with none, against a snapshot read from the maps: the
 * first apply after adoption), then HTB classes before any rule points a
 * packet at them (a foreign root qdisc is refused here, before anything
 * changes), rules and ports, attachments, and last the classes no rule uses
 * any more. Returns the writes performed and the new mirror.
 */
export function enforce(dp: DataPlane, ifaces: InterfaceSync, desired: DesiredState, force: boolean, mirror?: KernelMirror): Enforced {
  let plan: WritePlan;
  let next: KernelMirror;
  if (mirror) {
    ({ plan, next } = reconcileFrom(mirror, desired));
  } else {
    plan = reconcile(desired, snapshot(dp));
    next = mirrorOf(desired, plan, PS.PS_MAX_SLOTS);
  }
  const classes = classPlan(desired, plan.classes);
  ifaces.prepareShaping(desired.interfaces, classes);
  try {
    applyPlan(dp, plan);
  } finally {
    dp.releaseViews();
  }
  ifaces.sync(desired.interfaces, classes, force);
  return { ...plan, mirror: next };
}

/** Policy source for validation: interfaces are looked up in this network namespace. */
const policyEnv = { interfaceExists: (name: string) => ifNameToIndex(name) !== 0 };

export class Agent {
  private dp: DataPlane | undefined;
  private ifaces: InterfaceSync | undefined;
  private current: AgentState | undefined;
  /** What the maps hold after the last apply; dropped when an apply fails, so the next one reads the maps again. */
  private mirror: KernelMirror | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The configured policy file (the per-node file, when one is in force, sits beside it). */
  readonly policyFile: string;
  private source: PolicySource;
  private readonly log: Logger;
  /** Reloads so far, by outcome. */
  readonly reloads: ReloadCounts = { applied: 0, rejected: 0, failed: 0 };
  /** Whether the last reload was applied (false: the file on disk was refused and the previous policy stays). */
  lastReloadSuccessful = true;
  /** The file and content last refused: not refused again at each later event in its directory. */
  private refused: { path: string; hash: string } | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.policyFile = resolve(opts.policyPath);
    this.source = resolvePolicySource(this.policyFile, opts.nodeName);
    this.log = opts.log;
  }

  /** The policy file in force: API writes edit it. */
  get policyPath(): string {
    return this.source.path;
  }

  /** The policy file in force and why it was chosen. */
  get policySource(): PolicySource {
    return this.source;
  }

  /** The loaded data plane (after start). */
  get dataPlane(): DataPlane {
    if (!this.dp) throw new Error('agent not started');
    return this.dp;
  }

  /** The policy in force, its plan and the slot of every bucket. */
  get state(): AgentState {
    if (!this.current) throw new Error('agent not started');
    return this.current;
  }

  /** Interface attachment state. */
  interfaces() {
    return this.ifaces?.list() ?? [];
  }

  /** Load the policy (invalid: throw), load or adopt the data plane, apply, attach, start watching. */
  async start(): Promise<ApplyResult> {
    const { policy, warnings, hash, source } = await this.load();
    this.source = source;
    const stale = removeStaleTempFiles(source.path);
    if (stale.length) this.log.info({ removed: stale }, 'removed temporary files of an earlier agent that died while saving the policy');
    for (const w of warnings) this.log.warn(formatDiagnostic(w));
    this.dp = DataPlane.open({ pinDir: policy.pinDir, objectPath: this.opts.objectPath, clientTable: policy.clientTable });
    if (this.dp.clientTable !== policy.clientTable) {
      this.log.warn(
        { pinned: this.dp.clientTable, policy: policy.clientTable },
        'clientTable differs from the pinned client table, which keeps its size; "portshaper detach --purge" and a restart apply it (per-client state is lost)',
      );
    }
    const meta = this.dp.meta();
    this.log.info(
      { pinDir: policy.pinDir, adopted: this.dp.adopted, layout: meta.layout_version, libbpf: libbpfVersion() },
      this.dp.adopted ? 'adopted pinned maps: credit and counters carry on' : 'created pinned maps',
    );
    this.ifaces = new InterfaceSync(this.dp, this.log);
    this.mirror = undefined;
    const result = this.apply(policy, hash, true, 'start', this.source, { warnings });
    // Failures are logged by serialize(); the timer just tries again.
    this.pollTimer = setInterval(() => this.serialize(async () => this.ifaces?.poll()).catch(() => undefined), this.opts.interfacePollMs ?? 500);
    this.pollTimer.unref();
    this.watch();
    return result;
  }

  /**
   * Re-read the policy file and apply it. An invalid policy is rejected
   * whole: the running one stays in force and the reason is logged.
   */
  reload(reason: string): Promise<ApplyResult | undefined> {
    return this.serialize(async () => {
      // An API write has already applied what it wrote, and most directory events change nothing:
      // hashing is enough to see that, without parsing again.
      const next = resolvePolicySource(this.policyFile, this.opts.nodeName);
      if (reason === 'file changed') {
        const hash = hashFile(next.path);
        if (this.current && next.path === this.source.path && hash === this.current.hash) return undefined;
        // An invalid file is logged once, not at every write of an editor's swap file beside it.
        if (this.refused && this.refused.path === next.path && this.refused.hash === hash) return undefined;
      }
      let loaded;
      try {
        loaded = await this.load();
      } catch (err) {
        this.lastReloadSuccessful = false;
        if (!(err instanceof PolicyError)) {
          this.reloads.failed++;
          throw err;
        }
        this.reloads.rejected++;
        this.refused = { path: next.path, hash: hashFile(next.path) };
        this.log.error({ reason, file: next.path, errors: err.diagnostics.map(formatDiagnostic) }, 'policy rejected; the running policy stays in force');
        return undefined;
      }
      for (const w of loaded.warnings) this.log.warn(formatDiagnostic(w));
      if (loaded.source.path !== this.source.path) {
        this.log.info({ from: this.source.path, to: loaded.source.path, kind: loaded.source.kind }, 'policy source changed');
      }
      let result: ApplyResult;
      try {
        result = this.apply(loaded.policy, loaded.hash, false, reason, loaded.source, { warnings: loaded.warnings });
      } catch (err) {
        this.lastReloadSuccessful = false;
        this.reloads.failed++;
        throw err;
      }
      this.reloads.applied++;
      this.lastReloadSuccessful = true;
      this.refused = undefined;
      return result;
    });
  }

  /** Stop watching. With detach, remove our filters and registrations (pins stay). */
  async stop(opts: { detach?: boolean } = {}): Promise<void> {
    await this.serialize(async () => {
      clearInterval(this.pollTimer);
      clearTimeout(this.debounce);
      this.watcher?.close();
      if (opts.detach) {
        this.ifaces?.detachAll();
        this.log.info('detached from every interface');
      } else {
        this.log.info('stopping; the data plane keeps enforcing (use --detach-on-exit or "portshaper detach" to remove it)');
      }
      this.dp?.close();
      this.dp = undefined;
    });
  }

  /** Validate policy text exactly as the file is validated; throws PolicyError with every diagnostic. */
  validateText(text: string, file = this.policyPath): { policy: ValidPolicy; warnings: Diagnostic[] } {
    const { policy, diagnostics } = validatePolicy(parsePolicy(text, file), policyEnv);
    if (policy === undefined) throw new PolicyError(diagnostics);
    return { policy, warnings: diagnostics };
  }

  /**
   * Apply a validated policy whose file content hashes to `hash` (see
   * hashText): API writes, and their rollback. The caller writes the file;
   * the watcher's reload then finds the hash in force and does nothing.
   * Call inside serialize().
   */
  applyPolicy(policy: ValidPolicy, hash: string | (() => string), reason: string, extra: ApplyExtra = {}): ApplyResult {
    const result = this.apply(policy, hash, false, reason, this.source, extra);
    // The service only writes over a file that validates: what is on disk is in force again.
    this.lastReloadSuccessful = true;
    return result;
  }

  /** Read the file in force once: the hash must be of the very text that was validated. */
  private async load(): Promise<{ policy: ValidPolicy; warnings: Diagnostic[]; hash: string; source: PolicySource }> {
    const source = resolvePolicySource(this.policyFile, this.opts.nodeName);
    const text = await readPolicyText(source.path);
    return { ...this.validateText(text, source.path), hash: hashText(text), source };
  }

  /**
   * The one rule of a policy text that holds only that rule, validated as the
   * file is (warnings included: any makes it undefined). See validateOne.
   */
  validateRule(text: string): PolicyRule | undefined {
    return validateOne(text, this.policyPath, policyEnv)?.rule;
  }

  /** hash may be a function: a large file is then hashed after the kernel holds the change, not before. */
  private apply(policy: ValidPolicy, hash: string | (() => string), force: boolean, reason: string, source: PolicySource, extra: ApplyExtra): ApplyResult {
    const dp = this.dataPlane;
    if (this.current && policy.pinDir !== this.current.policy.pinDir) {
      this.log.warn({ running: this.current.policy.pinDir, file: policy.pinDir }, 'pinDir changes take effect at the next agent start');
    }
    const t0 = process.hrtime.bigint();
    const previous = this.current;
    const change = extra.change;
    const replanned = change && previous ? replanRule(previous.desired, change.before, change.after) : undefined;
    const desired = replanned ?? planPolicy(policy);
    let plan: Enforced;
    try {
      plan = enforce(dp, this.ifaces!, desired, force, this.mirror);
    } catch (err) {
      this.mirror = undefined;
      throw err;
    }
    this.mirror = plan.mirror;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const changed = replanned && previous ? { previous, rule: change!.after.name } : undefined;
    this.current = agentState(policy, desired, plan.slots, typeof hash === 'string' ? hash : hash(), extra.warnings ?? [], changed);
    this.source = source;
    const result = {
      buckets: desired.buckets.length,
      ruleWrites: plan.rules.length,
      portWrites: plan.portIndexes.length,
      released: plan.release.length,
      ms: Math.round(ms * 100) / 100,
    };
    this.log.info({ reason, source: source.path, rules: policy.rules.length, ...result, changed: !isNoop(plan) }, 'policy applied');
    return result;
  }

  /** Run kernel work one piece at a time (reloads, polls, API writes). */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch((err: unknown) => this.log.error({ err: String(err) }, 'agent task failed'));
    return next;
  }

  /**
   * Watch the policy's directory, and react to any event in it: editors write
   * a new file and rename it over the old one; kubelet updates a ConfigMap by
   * writing a `..<timestamp>` directory and renaming `..data_tmp` over `..data`,
   * events none of which names the policy file (policy.yaml is a symlink
   * through ..data); a per-node file may appear or go. reload() hashes the
   * file in force and does nothing when it is unchanged.
   */
  private watch(): void {
    const changed = () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.reload('file changed').catch(() => undefined), this.opts.watchDebounceMs ?? 200);
    };
    this.watcher = watch(dirname(this.policyFile), changed);
    this.watcher.on('error', (err) => this.log.warn({ err: String(err) }, 'cannot watch the policy file; reload with SIGHUP'));
    // A change between start()'s read and this watch has no event: look once (a hash, unless it changed).
    changed();
  }
}

/** The hash the agent keeps of the policy file's content. */
export function hashText(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

function hashFile(path: string): string {
  try {
    return hashText(readFileSync(path));
  } catch {
    return '';
  }
}
