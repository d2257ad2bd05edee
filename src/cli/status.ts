/** `portshaper status`: the agent's rules with configured and measured rates and drops, from its API. */
import type { RuleView } from '../api/schemas.js';
import { formatRate } from '../policy/index.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS, reportApiError } from './client.js';

export const STATUS_HELP = `Usage: portshaper status [options]

Show every rule the running agent enforces: port(s), protocol, direction,
configured rate, rate measured over the last seconds, and packets dropped
since the rule was created (per direction when a rule has both).

Options:
${CLIENT_HELP}

Exit status: 0 success; 1 the API refused the request; 2 the agent cannot
be reached or failed.
`;

/** Run the status command; returns the exit code. */
export async function runStatus(argv: string[]): Promise<number> {
  const { values } = parseCommand('status', argv, CLIENT_OPTIONS);
  if (values.help) {
    process.stdout.write(STATUS_HELP);
    return 0;
  }
  const client = ApiClient.fromOptions(values);
  const res = await client.request<{ rules: RuleView[] }>('GET', '/v1/rules');
  if (res.status !== 200) return reportApiError(res, values.json ?? false);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(res.body, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(statusTable(res.body.rules));
  return 0;
}

/** The status table, one line per rule and direction. */
export function statusTable(rules: RuleView[]): string {
  const rows = [['RULE', 'PORT', 'PROTO', 'DIR', 'MODE', 'RATE', 'MEASURED', 'DROPPED PKTS', 'DROPPING']];
  for (const r of rules) {
    for (const direction of ['ingress', 'egress'] as const) {
      const c = r.counters[direction];
      const o = r.observed[direction];
      if (!c) continue;
      rows.push([
        r.name,
        String(r.port),
        r.protocol,
        direction,
        r.mode,
        r.rate,
        o && o.windowSeconds > 0 ? measured(o.bitsPerSecond) : '-',
        String(c.droppedPackets),
        o && o.windowSeconds > 0 ? `${o.droppedPacketsPerSecond}/s` : '-',
      ]);
    }
  }
  if (rows.length === 1) return 'no rules\n';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function measured(bps: number): string {
  return bps < 1000 ? `${bps}bit` : formatRate(bps);
}
