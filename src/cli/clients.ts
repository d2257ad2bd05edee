/** `portshaper clients NAME`: the clients of a rule with per-client limits, from the agent's API. */
import type { ClientsView } from '../api/schemas.js';
import { UsageError } from '../errors.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS, reportApiError } from './client.js';

export const CLIENTS_HELP = `Usage: portshaper clients NAME [options]

Show the clients of rule NAME (a rule with a client: section): how many the
client table holds, how many it forgot because it was full (evicted), and
the busiest ones by bytes passed or by packets dropped.

Options:
  --by bytes|drops       rank by bytes passed (default) or packets dropped
  --top N                how many clients to list (default 20, at most 1000)
${CLIENT_HELP}

Exit status: 0 success; 1 the API refused the request (unknown rule: 1);
2 the agent cannot be reached or failed.
`;

/** Run the clients command; returns the exit code. */
export async function runClients(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand('clients', argv, { ...CLIENT_OPTIONS, by: { type: 'string' }, top: { type: 'string' } }, true);
  if (values.help) {
    process.stdout.write(CLIENTS_HELP);
    return 0;
  }
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new UsageError('give one rule name, e.g. portshaper clients api\nRun "portshaper clients --help" for usage.');
  const by = values.by ?? 'bytes';
  if (by !== 'bytes' && by !== 'drops') throw new UsageError(`--by is bytes or drops, not "${by}"`);
  const top = Number(values.top ?? 20);
  if (!Number.isInteger(top) || top < 1 || top > 1000) throw new UsageError(`--top is a whole number from 1 to 1000, not "${values.top}"`);
  const client = ApiClient.fromOptions(values);
  const res = await client.request<ClientsView>('GET', `/v1/rules/${encodeURIComponent(name)}/clients?by=${by}&top=${top}`);
  if (res.status !== 200) return reportApiError(res, values.json ?? false);
  process.stdout.write(values.json ? `${JSON.stringify(res.body, null, 2)}\n` : clientsTable(res.body));
  return 0;
}

/** The clients table: a summary line, then one line per client. */
export function clientsTable(v: ClientsView): string {
  const head = `${v.rule}: ${v.clients} clients in the table, ${v.added} added, ${v.evicted} evicted (table full); top ${v.top.length} by ${v.by}\n`;
  if (!v.top.length) return head;
  const rows = [['CLIENT', 'DIR', 'PASSED', 'PASSED PKTS', 'DROPPED PKTS', 'IDLE']];
  for (const c of v.top) {
    rows.push([c.address, c.direction, bytes(c.passedBytes), String(c.passedPackets), String(c.droppedPackets), `${c.idleSeconds.toFixed(1)}s`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return head + rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** Bytes for a person: 950 B, 12.5 kB, 3.2 MB, 1.1 GB (SI). */
function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}
