/** `portshaper agent`: the node agent in the foreground, systemd-friendly. */
import { startMetricsServer } from '../api/metrics-server.js';
import { startApiServer, type ApiServer } from '../api/server.js';
import { Agent } from '../controller/agent.js';
import { AgentService } from '../api/service.js';
import { nodePolicyName } from '../controller/source.js';
import { preflight } from '../controller/preflight.js';
import { RuleCounters } from '../controller/rule-counters.js';
import { formatRate } from '../policy/index.js';
import { parseListen } from '../policy/validate.js';
import { createLogger, type Logger } from '../log.js';
import { UsageError } from '../errors.js';
import { parseCommand } from './args.js';

export const DEFAULT_POLICY = '/etc/portshaper/policy.yaml';

export const AGENT_HELP = `Usage: portshaper agent [--policy FILE] [options]

Run the node agent in the foreground: load the policy, attach the eBPF
shaper to its interfaces and enforce it; reload on SIGHUP and when the file
changes (an invalid policy is rejected whole, the running one stays); re-attach
interfaces that disappear and come back. Needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN.

On SIGTERM/SIGINT the agent exits and the data plane KEEPS ENFORCING (an edge
host must not lose its limits because the agent stopped); a new agent adopts
the pinned maps without resetting counters or bucket credit.

Options:
  --policy FILE          policy file (default ${DEFAULT_POLICY})
  --detach-on-exit       remove our filters on SIGTERM/SIGINT instead
  --no-api               do not serve the REST API (api: in the policy sets
                         its address, token file and TLS)
  --metrics-listen HOST:PORT
                         serve GET /metrics, /healthz and /readyz, without a
                         token, on this address too (overrides metrics.listen;
                         on Kubernetes: --metrics-listen=$(NODE_IP):9181)
  --node-name NAME       read node.NAME.yaml from the policy file's directory
                         instead of the policy file when it exists (default:
                         the NODE_NAME environment variable)
  --stats-interval SEC   log each rule's counters and observed rates (as the
                         API reports them) every SEC seconds (default 10; 0
                         turns it off)
  --log-level LEVEL      trace | debug | info | warn | error (default info)
  --log-json             JSON lines even when stdout is a terminal
  -h, --help             show this help

Logs: JSON lines on stdout (pino), one readable line per event on a terminal.
Exit codes: 0 clean stop; 1 invalid policy or usage; 2 cannot run here
(privileges, kernel, BPF object); 3 internal error.
`;

/** Run the agent until SIGTERM/SIGINT; returns the exit code. */
export async function runAgent(argv: string[]): Promise<number> {
  const { values } = parseCommand('agent', argv, {
    policy: { type: 'string' },
    'detach-on-exit': { type: 'boolean' },
    'no-api': { type: 'boolean' },
    'metrics-listen': { type: 'string' },
    'node-name': { type: 'string' },
    'stats-interval': { type: 'string' },
    'log-level': { type: 'string' },
    'log-json': { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(AGENT_HELP);
    return 0;
  }
  const statsSeconds = Number(values['stats-interval'] ?? '10');
  if (!Number.isFinite(statsSeconds) || statsSeconds < 0) throw new UsageError(`--stats-interval must be a number of seconds ≥ 0, got "${values['stats-interval']}"`);
  let metricsListen: { host: string; port: number } | undefined;
  if (values['metrics-listen'] !== undefined) {
    const parsed = parseListen(values['metrics-listen']);
    if (typeof parsed === 'string') throw new UsageError(`--metrics-listen: ${parsed}`);
    metricsListen = parsed;
  }
  const nodeName = values['node-name'] ?? (process.env.NODE_NAME || undefined);
  const log = createLogger({ level: values['log-level'] ?? 'info', json: values['log-json'] ?? false });
  for (const warning of preflight('running the agent')) log.warn(warning);

  // Listen before starting: a SIGTERM during start-up must still stop cleanly.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const agent = new Agent({ policyPath: values.policy ?? DEFAULT_POLICY, log, ...(nodeName ? { nodeName } : {}) });
  // SIGHUP's default action kills the process: handle it from the start, and
  // reload once started if one arrived meanwhile (systemctl reload right
  // after start must not stop the agent).
  let started = false;
  let reloadAfterStart = false;
  process.on('SIGHUP', () => {
    if (started) void agent.reload('SIGHUP').catch(() => undefined);
    else reloadAfterStart = true;
  });
  await agent.start();
  started = true;
  if (reloadAfterStart) void agent.reload('SIGHUP during start').catch(() => undefined);
  let api: ApiServer | undefined;
  let metrics: ApiServer | undefined;
  // One reader for the API, the metrics listener and the stats log: one sampler, one "observed".
  const counters = new RuleCounters(agent, log);
  const service = new AgentService(agent, log, counters);
  metricsListen ??= agent.state.policy.metrics.listen;
  try {
    if (!values['no-api']) api = await startApiServer(agent, log, service);
    if (metricsListen) metrics = await startMetricsServer(service, log, metricsListen);
  } catch (err) {
    // Enforcement stays in place; the operator fixes the address and starts again.
    await api?.close();
    await agent.stop();
    throw err;
  }
  const { path, kind } = agent.policySource;
  log.info(
    { policy: path, source: kind, ...(nodeName ? { nodeName, nodeFile: nodePolicyName(nodeName) } : {}) },
    kind === 'node' ? 'agent running on the per-node policy (SIGHUP reloads, SIGTERM stops)' : 'agent running (SIGHUP reloads, SIGTERM stops)',
  );

  if (statsSeconds > 0) counters.start();
  const stats = statsSeconds > 0 ? setInterval(() => logStats(agent, counters, log), statsSeconds * 1000) : undefined;
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await stopSignal;
  clearInterval(stats);
  if (statsSeconds > 0) counters.stop();
  clearInterval(keepAlive);
  log.info({ signal }, 'stopping');
  await metrics?.close();
  await api?.close();
  await agent.stop({ detach: values['detach-on-exit'] ?? false });
  return 0;
}

/** Above this many rules, log only the rules that drop most. */
const STATS_LINES = 20;

/** Log lines per rule: configured rate, observed rate and drops per second (both directions added), counters so far. */
function logStats(agent: Agent, counters: RuleCounters, log: Logger): void {
  const readings = counters.read();
  const lines = agent.state.policy.rules.map((rule) => {
    const directions = Object.values(readings.get(rule.name) ?? {});
    const add = (f: (d: (typeof directions)[number]) => number) => directions.reduce((sum, d) => sum + f(d), 0);
    return {
      rule: rule.name,
      configured: rule.rateBps ? formatRate(rule.rateBps) : 'unlimited',
      measured: formatMeasured(add((d) => d.observed.bitsPerSecond)),
      droppedPerSecond: add((d) => d.observed.droppedPacketsPerSecond),
      windowSeconds: Math.max(0, ...directions.map((d) => d.observed.windowSeconds)),
      passedPkts: add((d) => d.counters.passedPackets),
      droppedPkts: add((d) => d.counters.droppedPackets),
    };
  });
  const shown = lines.length <= STATS_LINES ? lines : [...lines].sort((a, b) => b.droppedPerSecond - a.droppedPerSecond).slice(0, STATS_LINES);
  for (const line of shown) log.info(line, 'rule counters');
  if (shown.length < lines.length) log.info({ rules: lines.length, shown: shown.length }, 'rule counters: only the rules with the most drops per second are shown');
}

function formatMeasured(bps: number): string {
  return bps < 1 ? '0bit' : formatRate(Math.round(bps));
}
