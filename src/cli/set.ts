/** `portshaper set NAME --rate R [--burst B]`: change (or create) a rule through the agent's API. */
import type { RuleView } from '../api/schemas.js';
import { UsageError } from '../errors.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS, reportApiError } from './client.js';

export const SET_HELP = `Usage: portshaper set NAME [--rate R] [--burst B] [--port P ...] [options]

Change a rule of the running agent. The change is in force in the kernel when
the command returns, and written into the policy file (comments kept). With
--port and a NAME the policy does not have, a new rule is created.

Options:
  --rate R               rate in tc units (10mbit, 1.5gbit) or "unlimited"
  --burst B              bucket depth: a size (64kb) or a time (300ms)
  --mode M               shape (queue on egress; polices ingress) | police | monitor
  --port P               port or range "30000-30999" (needed to create a rule)
  --protocol P           tcp | udp | any (when creating; default any)
  --direction D          ingress | egress | both (when creating; default both)
${CLIENT_HELP}

Exit status: 0 success; 1 the change was refused (invalid, overlapping, no
such rule), with each problem printed; 2 the agent cannot be reached or failed.
`;

/** Run the set command; returns the exit code. */
export async function runSet(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand('set', argv, {
    ...CLIENT_OPTIONS,
    rate: { type: 'string' },
    burst: { type: 'string' },
    mode: { type: 'string' },
    port: { type: 'string' },
    protocol: { type: 'string' },
    direction: { type: 'string' },
  }, true);
  if (values.help) {
    process.stdout.write(SET_HELP);
    return 0;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length) throw new UsageError('set takes one rule NAME\nRun "portshaper set --help" for usage.');
  const change: Record<string, unknown> = {};
  for (const key of ['rate', 'burst', 'mode', 'protocol', 'direction'] as const) if (values[key] !== undefined) change[key] = values[key];
  if (values.port !== undefined) change.port = /^[0-9]+$/.test(values.port) ? Number(values.port) : values.port;
  if (!Object.keys(change).length) throw new UsageError('nothing to change: give --rate, --burst, --mode or --port\nRun "portshaper set --help" for usage.');

  const client = ApiClient.fromOptions(values);
  const path = `/v1/rules/${encodeURIComponent(name)}`;
  let res = await client.request<RuleView>('PATCH', path, change);
  if (res.status === 404 && change.port !== undefined) res = await client.request<RuleView>('PUT', path, change);
  if (res.status !== 200 && res.status !== 201) return reportApiError(res, values.json ?? false);
  if (values.json) process.stdout.write(`${JSON.stringify(res.body, null, 2)}\n`);
  else process.stdout.write(`${res.status === 201 ? 'created' : 'changed'} ${res.body.name}: port ${res.body.port} ${res.body.protocol} ${res.body.direction}, rate ${res.body.rate}, burst ${res.body.burstBytes} bytes, ${res.body.mode} (in force, saved in the policy)\n`);
  return 0;
}
