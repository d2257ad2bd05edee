/**
 * Reads a policy file and runs parse → validate, the way the agent and the
 * CLI load one.
 */
import { readFile } from 'node:fs/promises';
import { PolicyError, type Diagnostic } from '../errors.js';
import { parsePolicy } from './parse.js';
import type { PolicyEnv, ValidPolicy } from './types.js';
import { validatePolicy } from './validate.js';

/** Reads a policy file's text; an unreadable file is a PolicyError pointing at the file. */
export async function readPolicyText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new PolicyError([
      {
        file: path,
        line: 1,
        column: 1,
        message: `cannot read the policy file (${reason}); check the path, or start from examples/policy.yaml`,
        severity: 'error',
        code: 'file',
      },
    ]);
  }
}

/** Loads and validates a policy file; throws PolicyError (every diagnostic) on any error, returns the warnings. */
export async function loadPolicyFile(path: string, env: PolicyEnv): Promise<{ policy: ValidPolicy; warnings: Diagnostic[] }> {
  const text = await readPolicyText(path);
  const { policy, diagnostics } = validatePolicy(parsePolicy(text, path), env);
  if (policy === undefined) throw new PolicyError(diagnostics);
  return { policy, warnings: diagnostics };
}
