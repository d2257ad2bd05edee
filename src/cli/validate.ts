/** `portshaper validate FILE...`: lint policy files for CI pipelines and editors. */
import { formatDiagnostic, PolicyError, UsageError } from '../errors.js';
import { ifNameToIndex } from '../kernel/libc.js';
import { loadPolicyFile } from '../policy/index.js';
import { parseCommand } from './args.js';

export const VALIDATE_HELP = `Usage: portshaper validate FILE...

Check policy files without touching the kernel. Every problem of every file
is printed as file:line:column: message on stderr (warnings too).

Options:
  --no-interfaces   do not check that interfaces exist on this host
                    (when linting policies for other machines)
  -h, --help        show this help

Exit status: 0 when every file is valid (warnings allowed), 1 otherwise.
`;

/** Run the validate command; returns the exit code. */
export async function runValidate(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand('validate', argv, { 'no-interfaces': { type: 'boolean' } }, true);
  if (values.help) {
    process.stdout.write(VALIDATE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError('validate needs at least one FILE\nRun "portshaper validate --help" for usage.');
  const env = { interfaceExists: values['no-interfaces'] ? () => true : (name: string) => ifNameToIndex(name) !== 0 };
  let failed = 0;
  for (const file of positionals) {
    try {
      const { warnings } = await loadPolicyFile(file, env);
      for (const w of warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
      process.stdout.write(`${file}: ok\n`);
    } catch (err) {
      if (!(err instanceof PolicyError)) throw err;
      failed++;
      for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
    }
  }
  return failed ? 1 : 0;
}
