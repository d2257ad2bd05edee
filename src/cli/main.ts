#!/usr/bin/env node
/**
 * portshaper command line: one entry point, one module per command.
 * Exit codes: 0 success; 1 invalid input (usage, policy); 2 the system
 * cannot do it (privileges, kernel, missing interface or object);
 * 3 unexpected internal error.
 */
import { ApiUnreachable, ERRORS, PolicyError, PortshaperError, UsageError } from '../errors.js';

const VERSION = '0.1.0';

export const MAIN_HELP = `portshaper ${VERSION}: per-port rate limits for Linux edge hosts (eBPF on tc clsact)

Usage: portshaper <command> [options]

Commands:
  agent --policy FILE     run the node agent in the foreground (enforce, reload, watch)
  validate FILE...        check policy files; print file:line:column errors
  detach                  remove portshaper's filters from every interface it attached to
  status                  rules of the running agent: rates configured and measured, drops
  set NAME --rate R       change (or, with --port, create) a rule through the agent's API
  rm NAME                 remove a rule through the agent's API
  clients NAME            the busiest clients of a rule with per-client limits
  ports                   listening ports: process, address, rules, rates, drops, flags
  top                     live view of the busiest ports (limited or not)
  mount-bpffs [DIR]       mount a BPF filesystem on DIR (/sys/fs/bpf) unless one is there

Run "portshaper <command> --help" for a command's options.

Exit codes:
  0  success
  1  invalid input: bad usage or an invalid policy (errors printed as file:line:column)
  2  the system cannot do it: not root / missing capabilities, kernel too old or
     lacking a feature, BPF object missing, interface missing
  3  unexpected internal error (please report it with the log)
`;

type Command = (argv: string[]) => Promise<number>;

/**
 * Each command's module, imported when the command runs: importing them all
 * up front would make "validate" (run in CI, often without libbpf or root)
 * load the kernel layer of "agent" and "detach".
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  agent: async () => (await import('./agent.js')).runAgent,
  validate: async () => (await import('./validate.js')).runValidate,
  detach: async () => (await import('./detach.js')).runDetach,
  status: async () => (await import('./status.js')).runStatus,
  set: async () => (await import('./set.js')).runSet,
  rm: async () => (await import('./rm.js')).runRm,
  clients: async () => (await import('./clients.js')).runClients,
  ports: async () => (await import('./ports.js')).runPorts,
  top: async () => (await import('./top.js')).runTop,
  'mount-bpffs': async () => (await import('./mount-bpffs.js')).runMountBpffs,
};

/** Map an error to its exit code (the error table's, src/errors.ts) and print it for a human. */
export function reportError(err: unknown): number {
  if (!(err instanceof PortshaperError)) {
    process.stderr.write(`portshaper: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 3;
  }
  if (err instanceof PolicyError) {
    // Positioned lines, as validate prints them: editors and CI read them without a prefix.
    process.stderr.write(`${err.message}\n`);
  } else if (err instanceof UsageError || err instanceof ApiUnreachable) {
    // Their messages already say what to do (which --help to read, where the API should be).
    process.stderr.write(`portshaper: ${err.message}\n`);
  } else {
    const fix = err.hint === undefined ? `\n  fix: ${ERRORS[err.code].hint}` : '';
    process.stderr.write(`portshaper: ${err.message}${fix} [${err.code}]\n`);
  }
  return ERRORS[err.code].exit;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(MAIN_HELP);
    return command === undefined ? 1 : 0;
  }
  if (command === '--version' || command === '-V') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const load = COMMANDS[command];
  if (!load) {
    process.stderr.write(`portshaper: unknown command "${command}"\n\n${MAIN_HELP}`);
    return 1;
  }
  try {
    const run = await load();
    return await run(rest);
  } catch (err) {
    return reportError(err);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportError(err);
  },
);
