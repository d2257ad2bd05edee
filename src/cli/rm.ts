/** `portshaper rm NAME`: remove a rule through the agent's API. */
import { UsageError } from '../errors.js';
import { parseCommand } from './args.js';
import { ApiClient, CLIENT_HELP, CLIENT_OPTIONS, reportApiError } from './client.js';

export const RM_HELP = `Usage: portshaper rm NAME [options]

Remove a rule from the running agent: its ports stop being limited when the
command returns, and the rule is removed from the policy file.

Options:
${CLIENT_HELP}

Exit status: 0 removed; 1 no such rule; 2 the agent cannot be reached or failed.
`;

/** Run the rm command; returns the exit code. */
export async function runRm(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand('rm', argv, CLIENT_OPTIONS, true);
  if (values.help) {
    process.stdout.write(RM_HELP);
    return 0;
  }
  const [name, ...extra] = positionals;
  if (name === undefined || extra.length) throw new UsageError('rm takes one rule NAME\nRun "portshaper rm --help" for usage.');
  const res = await ApiClient.fromOptions(values).request('DELETE', `/v1/rules/${encodeURIComponent(name)}`);
  if (res.status !== 204) return reportApiError(res, values.json ?? false);
  if (values.json) process.stdout.write(`${JSON.stringify({ removed: name })}\n`);
  else process.stdout.write(`removed ${name} (no longer enforced, removed from the policy)\n`);
  return 0;
}
