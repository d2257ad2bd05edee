/**
 * Section "agent": the control plane as an operator meets it, measured on
 * the real agent process (`node dist/cli/main.js agent --policy FILE`), not
 * on the library calls the controlplane section times. Each run starts one
 * agent in a namespace of its own (veth, pin directory, API port, policy
 * directory), measures, and removes everything again, also when a step
 * fails:
 *
 *   - the bundled policy (examples/policy.yaml, as `make run` loads it):
 *     start until /readyz answers 200, RSS, idle CPU;
 *   - N generated police rules (flow-style YAML, one rule a line) for each
 *     rule count: `nft -f` of the same limits as a map (same namespace, just
 *     before), start until the agent logs "policy applied" and until
 *     /readyz, idle CPU of the 1 Hz counter sampler from /proc/PID/stat, RSS
 *     (VmRSS) and its peak (VmHWM), GET /v1/rules/{name} at concurrency 32,
 *     GET /v1/rules, PATCH round trips, PATCH → new rate in the pinned
 *     ps_rules map, and PUT /v1/policy of the whole set.
 *
 * One step failing (a timeout, an error status) is recorded with its reason
 * and the run goes on with the next step: one slow operation must not cost
 * the other rows. Every loop is bounded in time, because today some of these
 * operations take seconds at 65,536 rules.
 *
 *   npx vite-node bench/main.ts -- --only agent [--quick]
 *   PS_BENCH_AGENT_COUNTS=1,1000 npx vite-node bench/main.ts -- --only agent --quick
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PS } from '../../src/kernel/layout.js';
import { removePins } from '../../src/kernel/pins.js';
import { AgentProcess, CLI, PinnedReader, type LogRecord } from '../../test/helpers/agent.js';
import { createTopology, nsExec, type Topology } from '../../test/helpers/net.js';
import { clockMs, ApiClient, type ApiRequest } from '../lib/apiclient.js';
import { onCleanup } from '../lib/cleanup.js';
import type { BenchContext } from '../lib/context.js';
import { nftFile, tempFile, tempPath, timeMs } from '../lib/host.js';
import { withLoad, type LoadSample } from '../lib/load.js';
import { agentSummary } from '../lib/report.js';
import { log } from '../lib/runner.js';
import { MAX_RULES, NFT_TABLES, nftMap, ruleSet, type PortRule } from '../lib/rulesets.js';

/** The limit of every generated rule, as in the controlplane section. */
const RATE = { text: '100mbit', bps: 100e6 };
const BURST = { text: '300ms', ns: 300_000_000 };
/** The bundled policy `make run` loads. */
const BUNDLED = join(import.meta.dirname, '..', '..', 'examples', 'policy.yaml');
/** API ports of the runs (each in its own namespace, so they could not collide anyway; distinct for clearer logs). */
const API_PORT_BASE = 9300;
/** Concurrency of the GET /v1/rules/{name} load. */
const GET_ONE_CONCURRENCY = 32;
/** Distinct rule names the GET /v1/rules/{name} load cycles through. */
const GET_ONE_NAMES = 1000;

/** Time bounds: generous, since some operations take many seconds at 65,536 rules today. */
interface Bounds {
  /** Spawn until /readyz answers 200. */
  startMs: number;
  /** Quiet time after ready before the idle window (start-up work and the first samples settle). */
  settleMs: number;
  /** Idle window for the sampler's CPU share. */
  idleMs: number;
  getOneMs: number;
  /** GET /v1/rules: at most this many, while the total stays under getAllBudgetMs. */
  getAllMax: number;
  getAllBudgetMs: number;
  /** PATCHes per phase (round trip; then API → kernel), while the phase stays under patchBudgetMs. */
  patchMax: number;
  patchBudgetMs: number;
  /** Any one request. */
  requestMs: number;
}

const BOUNDS: Bounds = { startMs: 180_000, settleMs: 2000, idleMs: 10_000, getOneMs: 5000, getAllMax: 3, getAllBudgetMs: 60_000, patchMax: 200, patchBudgetMs: 20_000, requestMs: 120_000 };
const QUICK_BOUNDS: Bounds = { ...BOUNDS, idleMs: 5000, getOneMs: 2000, getAllMax: 1, patchMax: 50, patchBudgetMs: 10_000 };

/** Latencies of a bounded series of requests. */
export interface Latency {
  /** Requests that succeeded (their times are the percentiles). */
  n: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  firstError?: string;
  /** Wall time of the series, s. */
  seconds: number;
  /** "count": all planned requests ran; "time": the time budget stopped the series first; "errors": three failures before any success. */
  stoppedBy: 'count' | 'time' | 'errors';
}

/** One agent process and what was measured on it. */
export interface AgentRun {
  /** Rules in the policy (2 for the bundled one). */
  rules: number;
  bundled: boolean;
  /** Machine load of other processes just before the run. */
  load?: LoadSample;
  /** `nft -f` of the same limits as a map, in the same namespace, ms (process start included). */
  nftMapMs?: number;
  /** Spawn until the agent logged "policy applied" (node start, parse, validate, plan, BPF load, apply, attach), ms. */
  fileToKernelMs?: number;
  /** The agent's own plan + apply time from that log record, ms. */
  applyMs?: number;
  /** Spawn until /readyz answered 200, ms. */
  startToReadyMs?: number;
  /** VmRSS after the idle window, MiB. */
  rssMiB?: number;
  /** VmHWM when ready (the start's peak) and at the end of the run (after every operation), MiB. */
  peakReadyMiB?: number;
  peakEndMiB?: number;
  /** Agent CPU (utime + stime) over the idle window: the 1 Hz sampler, timers, GC. */
  idle?: { seconds: number; cpuShare: number; cpuMsPerSecond: number; othersShare: number };
  getOne?: { concurrency: number; seconds: number; requests: number; rps: number; p50: number; p99: number; errors: number; firstError?: string };
  getAll?: { ms: number[]; bytes: number };
  patch?: Latency;
  apiToKernel?: Latency;
  putPolicy?: { ms: number; applyMs?: number };
  failures: string[];
}

export interface AgentResult {
  counts: number[];
  bounds: Bounds;
  runs: AgentRun[];
  /** Failed steps by run id, for the report's failure list. */
  failures: Record<string, string[]>;
}

const runId = (r: AgentRun) => (r.bundled ? 'agent bundled policy' : `agent x ${r.rules}`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Start the agent on the bundled policy, then at every rule count, and measure. */
export async function runAgent(ctx: BenchContext): Promise<AgentResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "make build" first (make bench does)`);
  const counts = countsFrom(process.env.PS_BENCH_AGENT_COUNTS) ?? (ctx.quick ? [1, 65_536] : [1, 1_000, 65_536]);
  const bounds = ctx.quick ? QUICK_BOUNDS : BOUNDS;
  const runs: AgentRun[] = [];
  const specs = [{ bundled: true, rules: 2 }, ...counts.map((rules) => ({ bundled: false, rules }))];
  for (const [k, spec] of specs.entries()) {
    const r: AgentRun = { ...spec, failures: [] };
    runs.push(r);
    log(`${runId(r)}: start`);
    try {
      await oneRun(r, k, bounds);
    } catch (err) {
      // Set-up or clean-up of the run itself failed (not one step): record it, go on with the next count.
      r.failures.push(`run: ${(err as Error).message}`);
      log(`${runId(r)} FAILED: ${(err as Error).message}`);
    }
  }
  const result: AgentResult = { counts, bounds, runs, failures: Object.fromEntries(runs.filter((r) => r.failures.length).map((r) => [runId(r), r.failures])) };
  log(`agent section:\n${agentSummary(result)}`);
  return result;
}

/**
 * PS_BENCH_AGENT_COUNTS=1,4096 runs the section at other rule counts: for
 * whoever is making one of these operations faster and wants a number in a
 * minute, not the full 65,536 case each time.
 */
function countsFrom(env: string | undefined): number[] | undefined {
  if (!env) return undefined;
  const counts = env.split(',').map((x) => Number(x.trim()));
  for (const c of counts) if (!Number.isInteger(c) || c < 1 || c > MAX_RULES) throw new Error(`PS_BENCH_AGENT_COUNTS: ${env}: each count must be a whole number in 1..${MAX_RULES}`);
  return counts;
}

/** Run one step; a failure is recorded with its reason and the run goes on. */
async function step<T>(r: AgentRun, what: string, fn: () => Promise<T>): Promise<T | undefined> {
  const t0 = performance.now();
  try {
    const v = await fn();
    log(`${runId(r)}: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    return v;
  } catch (err) {
    const message = (err as Error).message.split('\n')[0]!.slice(0, 500);
    r.failures.push(`${what}: ${message}`);
    log(`${runId(r)}: ${what} FAILED: ${message}`);
    return undefined;
  }
}

async function oneRun(r: AgentRun, k: number, bounds: Bounds): Promise<void> {
  const dir = tempPath(`agent-${k}`);
  mkdirSync(dir, { recursive: true });
  const policyPath = join(dir, 'policy.yaml');
  const tokenFile = join(dir, 'token');
  const pinDir = `/sys/fs/bpf/ps-bench-agent-${process.pid}-${k}`;
  const port = API_PORT_BASE + k;
  const rules = r.bundled ? [] : ruleSet(r.rules);

  r.load = (await withLoad(async () => undefined)).load;
  let topo: Topology | undefined;
  let agent: AgentProcess | undefined;
  let api: ApiClient | undefined;
  let reader: PinnedReader | undefined;
  removePins(pinDir);
  const undoPins = onCleanup(`remove pins in ${pinDir}`, () => removePins(pinDir));
  try {
    topo = await createTopology('agent');
    const ns = topo.nsB;
    const listen = `127.0.0.1:${port}`;
    const text = r.bundled ? bundledPolicy(pinDir, listen, tokenFile) : generatedPolicy(rules, { ifname: topo.ifB, pinDir, listen, tokenFile, rate: RATE.text });
    writeFileSync(policyPath, text);

    if (!r.bundled) {
      // The same limits as an nftables map, loaded and removed in this namespace before the agent starts.
      const file = tempFile(`agent-${k}.nft`, nftMap(rules, topo.ifB, { rateBps: RATE.bps, burstNs: BURST.ns }));
      await step(r, 'nft -f map', async () => {
        r.nftMapMs = await timeMs(() => nftFile(ns, file));
        await nsExec(ns, ['nft', 'delete', 'table', 'netdev', NFT_TABLES.map]);
      });
    }

    // The client starts first, so that its own start is not in the agent's start time.
    api = ApiClient.start(ns, `http://${listen}`);
    const spawnWall = Date.now();
    const spawnAt = clockMs();
    // As `make run` for the bundled policy (the default stats log every 10 s); without the stats log otherwise, so the idle CPU is the sampler's.
    const a = AgentProcess.start(ns, policyPath, r.bundled ? ['--stats-interval', '10'] : []);
    agent = a;
    const ready = await step(r, 'start until /readyz', async () => {
      const died = a.exited.then(({ code, signal }) => {
        throw new Error(`agent exited (${code ?? signal}) before it was ready: ${a.tail(5)}`);
      });
      // The agent is killed at the end of every run: that exit must not surface as an unhandled rejection.
      died.catch(() => undefined);
      const answer = await Promise.race([api!.waitReady('/readyz', bounds.startMs), died]);
      if (!answer.end) throw new Error(`/readyz not 200 within ${bounds.startMs} ms (last: ${answer.status} ${answer.body.slice(0, 200)}); agent log: ${a.tail(3)}`);
      r.startToReadyMs = answer.end - spawnAt;
      const applied = a.logs.find((x) => x.msg === 'policy applied') as (LogRecord & { ms?: number }) | undefined;
      if (applied) {
        r.fileToKernelMs = applied.time - spawnWall;
        r.applyMs = applied.ms;
      }
      r.peakReadyMiB = procStatusMiB(a.child.pid!, 'VmHWM');
      return true;
    });
    // Nothing else can be measured without a ready agent.
    if (!ready) return;
    const pid = a.child.pid!;
    // Without the token the writes below fail with 401 and say so; the reads still measure.
    await step(r, 'read the API token', () => api!.setToken(readFileSync(tokenFile, 'utf8').trim()));

    await step(r, 'idle CPU and RSS', async () => {
      await sleep(bounds.settleMs);
      r.idle = await idleCpu(pid, bounds.idleMs);
      r.rssMiB = procStatusMiB(pid, 'VmRSS');
    });
    if (r.bundled) return;

    await step(r, `GET /v1/rules/{name} x ${GET_ONE_CONCURRENCY}`, async () => {
      const names = Array.from({ length: Math.min(GET_ONE_NAMES, rules.length) }, (_, i) => ruleName(rules[Math.floor((i * rules.length) / Math.min(GET_ONE_NAMES, rules.length))]!));
      const requests: ApiRequest[] = names.map((_, i) => ({ method: 'GET', path: `/v1/rules/${names[(i * 7919) % names.length]}` }));
      const got = await api!.load(requests, GET_ONE_CONCURRENCY, bounds.getOneMs, bounds.requestMs);
      if (!got.ms.length) throw new Error(`no request succeeded (${got.errors} errors; first: ${got.firstError})`);
      const ms = got.ms.sort((x, y) => x - y);
      r.getOne = { concurrency: GET_ONE_CONCURRENCY, seconds: got.seconds, requests: ms.length, rps: ms.length / got.seconds, p50: pct(ms, 50), p99: pct(ms, 99), errors: got.errors, firstError: got.firstError };
    });

    await step(r, 'GET /v1/rules', async () => {
      const t0 = performance.now();
      const ms: number[] = [];
      let bytes = 0;
      while (ms.length < bounds.getAllMax && performance.now() - t0 < bounds.getAllBudgetMs) {
        const res = await api!.request({ method: 'GET', path: '/v1/rules', keepBody: true }, bounds.requestMs);
        if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body.slice(0, 200)}`);
        ms.push(res.ms);
        bytes = res.bytes;
      }
      r.getAll = { ms, bytes };
    });

    // The rule changed by the PATCHes: the first of the set, one bucket (egress).
    const target = ruleName(rules[0]!);
    let kbit = 50_000;
    const patchOf = (rate: number): ApiRequest => ({ method: 'PATCH', path: `/v1/rules/${target}`, token: true, body: { rate: `${rate}kbit` }, contentType: 'application/merge-patch+json' });

    await step(r, 'PATCH round trips', async () => {
      r.patch = await series(bounds, async () => {
        const res = await api!.request(patchOf(kbit++), bounds.requestMs);
        if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body.slice(0, 200)}`);
        return res.ms;
      });
    });

    await step(r, 'PATCH → ps_rules', async () => {
      reader = new PinnedReader(pinDir);
      const slot = reader.slotOf(`${target}/egress`, PS.PS_MAX_SLOTS);
      if (slot === undefined) throw new Error(`bucket ${target}/egress not found in ${pinDir}/ps_rules`);
      const rd = reader;
      r.apiToKernel = await series(bounds, async () => {
        const rate = kbit++;
        const want = BigInt(rate) * 1000n;
        // Watch ps_rules from here while the client sends the PATCH; the time is from the request's start (client clock) to the first read that shows the new rate.
        let answered = false;
        const sent = api!.request(patchOf(rate), bounds.requestMs).finally(() => (answered = true));
        let seenAt: number | undefined;
        const start = performance.now();
        const deadline = start + bounds.requestMs;
        while (performance.now() < deadline) {
          const done = answered;
          if (rd.rule(slot).rate_bps === want) {
            seenAt = clockMs();
            break;
          }
          if (done) break;
          // Read back to back while a change could still meet its target (each round yields, so the client's
          // answer is read); once it has taken longer, wait 2% of the time so far between reads: the error stays
          // within 2%, and a change that takes seconds does not cost a CPU of this shared 2-CPU machine.
          const waited = performance.now() - start;
          await (waited < 50 ? new Promise((res) => setImmediate(res)) : sleep(waited / 50));
        }
        const res = await sent;
        if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body.slice(0, 200)}`);
        if (seenAt === undefined) throw new Error(`rate ${rate}kbit not in ps_rules slot ${slot} after the 200`);
        return seenAt - res.at;
      });
    });

    await step(r, 'PUT /v1/policy', async () => {
      // Every rule's rate changes (the default): the whole set is written, the worst case of a replacement.
      const body = generatedPolicy(rules, { ifname: topo!.ifB, pinDir, listen, tokenFile, rate: '90mbit' });
      const res = await api!.request({ method: 'PUT', path: '/v1/policy', token: true, body, contentType: 'application/yaml', keepBody: true }, bounds.requestMs);
      if (res.status !== 200) throw new Error(`status ${res.status}: ${res.body.slice(0, 200)}`);
      let applyMs: number | undefined;
      try {
        applyMs = (JSON.parse(res.body) as { ms?: number }).ms;
      } catch {
        // The body is cut at 4 KiB; without the apply time the round trip still stands.
      }
      r.putPolicy = { ms: res.ms, applyMs };
    });

    await step(r, 'peak RSS', async () => {
      if (a.child.exitCode !== null || a.child.signalCode !== null) throw new Error(`agent exited during the run: ${a.tail(5)}`);
      r.peakEndMiB = procStatusMiB(pid, 'VmHWM');
    });
  } finally {
    api?.close();
    await agent?.kill();
    reader?.close();
    undoPins();
    await topo?.destroy();
  }
}

/** Repeat fn (returning ms) until bounds.patchMax calls or bounds.patchBudgetMs, whichever first; at least one call. */
async function series(bounds: Bounds, fn: () => Promise<number>): Promise<Latency> {
  const t0 = performance.now();
  const ms: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let calls = 0;
  let stoppedBy: Latency['stoppedBy'] = 'count';
  while (calls < bounds.patchMax && (calls === 0 || performance.now() - t0 < bounds.patchBudgetMs)) {
    calls++;
    try {
      ms.push(await fn());
    } catch (err) {
      errors++;
      firstError ??= (err as Error).message;
      // A request that timed out or failed outright will not do better if repeated at once.
      if (errors >= 3 && !ms.length) {
        stoppedBy = 'errors';
        break;
      }
    }
  }
  if (stoppedBy === 'count' && calls < bounds.patchMax) stoppedBy = 'time';
  if (!ms.length) throw new Error(`every request failed (${errors}): ${firstError}`);
  ms.sort((x, y) => x - y);
  return { n: ms.length, p50: pct(ms, 50), p99: pct(ms, 99), max: ms[ms.length - 1]!, errors, firstError, seconds: (performance.now() - t0) / 1000, stoppedBy };
}

/** Nearest-rank percentile of sorted values. */
function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A field of /proc/PID/status in MiB (the kernel gives kB). */
function procStatusMiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

/** Kernel ticks per second in /proc/PID/stat and /proc/stat (USER_HZ). */
const USER_HZ = 100;

/** utime + stime of a process (every thread), in ticks. */
function processTicks(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the closing parenthesis of comm: state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  return rest[11]! + rest[12]!;
}

/** user + nice + system ticks and all ticks of the machine. */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { busy: f[0]! + f[1]! + f[2]!, total: f.slice(0, 8).reduce((x, y) => x + y, 0) };
}

/**
 * The agent's CPU while nobody calls it, over `ms`: its 1 Hz counter
 * sampler, timers and GC. CPU ms per second is then an upper bound of what
 * one sample costs. Other processes' share of the machine over the same
 * window is kept to judge the number.
 */
async function idleCpu(pid: number, ms: number): Promise<NonNullable<AgentRun['idle']>> {
  const a = { agent: processTicks(pid), self: processTicks('self'), machine: machineTicks(), t: performance.now() };
  await sleep(ms);
  const b = { agent: processTicks(pid), self: processTicks('self'), machine: machineTicks(), t: performance.now() };
  const seconds = (b.t - a.t) / 1000;
  const agentTicks = b.agent - a.agent;
  const total = b.machine.total - a.machine.total;
  const others = b.machine.busy - a.machine.busy - agentTicks - (b.self - a.self);
  return {
    seconds,
    cpuShare: agentTicks / USER_HZ / seconds,
    cpuMsPerSecond: ((agentTicks / USER_HZ) * 1000) / seconds,
    othersShare: total > 0 ? Math.max(0, others / total) : 0,
  };
}

const ruleName = (r: PortRule) => `${r.protocol}-${r.port}`;

/**
 * N police rules on the veth's egress, one flow-style rule a line (what an
 * operator generating a large policy writes), with this run's pin
 * directory and API. Police, because 65,536 shaped rules would need more
 * HTB classes than a device holds (65,533).
 */
function generatedPolicy(rules: readonly PortRule[], o: { ifname: string; pinDir: string; listen: string; tokenFile: string; rate: string }): string {
  const head = [
    `pinDir: ${o.pinDir}`,
    'interfaces:',
    `  - name: ${o.ifname}`,
    '    ingress: false',
    '    egress: true',
    'api:',
    `  listen: ${o.listen}`,
    `  tokenFile: ${o.tokenFile}`,
    'defaults:',
    '  direction: egress',
    `  rate: ${o.rate}`,
    `  burst: ${BURST.text}`,
    '  mode: police',
    'rules:',
  ];
  return [...head, ...rules.map((r) => `  - {name: ${ruleName(r)}, port: ${r.port}, protocol: ${r.protocol}}`), ''].join('\n');
}

/** The bundled policy with this run's pin directory, API address and token file; everything else as shipped (loopback, shaped). */
function bundledPolicy(pinDir: string, listen: string, tokenFile: string): string {
  let text = readFileSync(BUNDLED, 'utf8');
  const swaps: [RegExp, string][] = [
    [/^pinDir:[^\n#]*/m, `pinDir: ${pinDir}`],
    [/^(\s+)listen: 127\.0\.0\.1:9180/m, `$1listen: ${listen}`],
    [/^(\s+)tokenFile: [^\s#]+/m, `$1tokenFile: ${tokenFile}`],
  ];
  for (const [re, to] of swaps) {
    if (!re.test(text)) throw new Error(`${BUNDLED} has no line matching ${re}: the benchmark cannot point it at its own pins and API`);
    text = text.replace(re, to);
  }
  return text;
}
