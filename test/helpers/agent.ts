/**
 * The real agent as a child process inside a test namespace (nsenter keeps
 * the host's bpffs, so pins are shared with the test), its JSON log lines
 * parsed as they arrive, and a reader of pinned maps independent of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bucketKeyHash } from '../../src/kernel/reconcile.js';
import { PS, psCounters, psRule, type PsCounters, type PsRule } from '../../src/kernel/layout.js';
import { objGet, possibleCpus } from '../../src/kernel/libbpf.js';
import { U32Map } from '../../src/kernel/maps.js';
import { sumCounters } from '../../src/kernel/counters.js';
import { removePins } from '../../src/kernel/pins.js';
import { nsEnterArgv, run } from './net.js';

export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

/** One parsed log record of the agent. */
export type LogRecord = Record<string, unknown> & { msg: string; time: number };

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** A running agent process. */
export class AgentProcess {
  readonly logs: LogRecord[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }[] = [];

  private constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line) as LogRecord;
          this.logs.push(rec);
          this.waiters = this.waiters.filter((w) => (w.pred(rec) ? (w.resolve(rec), false) : true));
        } catch {
          this.stderr.push(line);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => this.stderr.push(d));
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => (live.delete(child), resolve({ code, signal }))));
  }

  /** Start `portshaper agent` inside network namespace ns (env: added to the test's environment). */
  static start(ns: string, policyPath: string, extra: string[] = [], env: Record<string, string> = {}): AgentProcess {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "make build" first (make test does)`);
    const argv = nsEnterArgv(ns, [process.execPath, CLI, 'agent', '--policy', policyPath, '--log-json', '--stats-interval', '0', ...extra]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(child);
    return new AgentProcess(child);
  }

  /** Wait for a log record matching pred (already seen ones count unless `after` is given). */
  waitFor(pred: (r: LogRecord) => boolean, timeoutMs = 10_000, after = 0): Promise<LogRecord> {
    const seen = this.logs.slice(after).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`agent log: nothing matched within ${timeoutMs} ms; last lines:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push({ pred, resolve: (r) => (clearTimeout(timer), resolve(r)) });
    });
  }

  /** Wait for the agent's "policy applied" after log index `after`. */
  applied(after = 0, timeoutMs = 10_000): Promise<LogRecord> {
    return this.waitFor((r) => r.msg === 'policy applied', timeoutMs, after);
  }

  /** Send a signal. */
  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Last log lines, for assertion messages. */
  tail(n = 15): string {
    return [...this.logs.slice(-n).map((r) => JSON.stringify(r)), ...this.stderr.slice(-5)].join('\n');
  }

  /** SIGKILL if still running and wait for the exit. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** A temporary directory holding a policy file, written atomically like an editor would. */
export class PolicyDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'ps-policy-'));
  readonly path = join(this.dir, 'policy.yaml');

  /** Write the policy (temp file + rename). */
  write(text: string): void {
    const tmp = join(this.dir, '.policy.yaml.tmp');
    writeFileSync(tmp, text);
    renameSync(tmp, this.path);
  }

  /** The policy as last written. */
  read(): string {
    return readFileSync(this.path, 'utf8');
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Reads a bucket's configuration and counters straight from the pinned maps
 * (not through the agent), finding its slot by the key hash it carries.
 */
export class PinnedReader {
  private readonly rules: U32Map;
  private readonly counters: U32Map;
  private readonly cpus = possibleCpus();

  constructor(pinDir: string) {
    this.rules = new U32Map(objGet(join(pinDir, 'ps_rules')), { name: 'ps_rules', valueSize: psRule.size, perCpu: false, cpus: 1, maxEntries: PS.PS_MAX_SLOTS });
    this.counters = new U32Map(objGet(join(pinDir, 'ps_counters')), {
      name: 'ps_counters',
      valueSize: psCounters.size,
      perCpu: true,
      cpus: this.cpus,
      maxEntries: PS.PS_MAX_SLOTS,
    });
  }

  /** Slot of the bucket with this key, or undefined. Scans the first `limit` slots. */
  slotOf(key: string, limit = 1024): number | undefined {
    const hash = bucketKeyHash(key);
    for (let slot = 1; slot < limit; slot++) {
      const raw = this.rules.get(slot);
      if (!raw) continue;
      const r = psRule.decode(raw);
      if (r.flags & PS.PS_RULE_IN_USE && r.key_hash === hash) return slot;
    }
    return undefined;
  }

  rule(slot: number): PsRule {
    return psRule.decode(this.rules.get(slot)!);
  }

  counts(slot: number): PsCounters {
    return sumCounters(this.counters.get(slot)!, 0, this.cpus);
  }

  close(): void {
    this.rules.close();
    this.counters.close();
  }
}

/**
 * After a test's agent: detach its filters from inside the test's namespace
 * (the pinned interface list holds that namespace's ifindexes: run on the
 * host, detach would look at the host's interfaces and fail before purging),
 * then remove the pin directory whatever detach said.
 */
export async function purgeAgent(ns: string | undefined, pinDir: string): Promise<void> {
  const argv = [process.execPath, CLI, 'detach', '--pin-dir', pinDir, '--purge'];
  const [cmd, ...args] = ns ? nsEnterArgv(ns, argv) : argv;
  await run(cmd!, args, { allowFailure: true });
  removePins(pinDir);
}

/**
 * The teardown of an e2e file with one agent, in the order that leaves
 * nothing behind: stop the agent, close the reader of its pins, detach and
 * purge (purgeAgent), remove the policy directory, then the namespaces.
 */
export async function endAgentTest(t: {
  agent: AgentProcess | undefined;
  reader?: PinnedReader | undefined;
  topo: { nsB: string; destroy(): Promise<void> } | undefined;
  pinDir: string;
  policy: { remove(): void };
}): Promise<void> {
  await t.agent?.kill();
  t.reader?.close();
  await purgeAgent(t.topo?.nsB, t.pinDir);
  t.policy.remove();
  await t.topo?.destroy();
}
