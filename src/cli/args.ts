/**
 * Argument parsing shared by the commands (node:util parseArgs), with
 * errors that point at the command's --help.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parse argv for a command; `help` is always accepted. Throws UsageError. */
export function parseCommand<O extends Options>(command: string, argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\nRun "portshaper ${command} --help" for usage.`);
  }
}
