/**
 * `portshaper mount-bpffs`: mount a BPF filesystem where none is, so that a
 * Kubernetes init container needs neither a shell nor util-linux. With the
 * host's /sys/fs/bpf mounted into the container with Bidirectional
 * propagation, the mount lands on the host, where pins outlive the pod.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { mountBpffs } from '../kernel/libc.js';
import { onBpffs } from '../kernel/pins.js';
import { UsageError } from '../errors.js';
import { parseCommand } from './args.js';

export const MOUNT_BPFFS_HELP = `Usage: portshaper mount-bpffs [DIR]

Mount a BPF filesystem on DIR (default /sys/fs/bpf) unless DIR already is on
one; create DIR if missing. Needs CAP_SYS_ADMIN (the agent itself does not).
Exit 0 when DIR is on a BPF filesystem afterwards, 2 when mounting failed.

Options:
  -h, --help   show this help
`;

/** Run the mount-bpffs command; returns the exit code. */
export async function runMountBpffs(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand('mount-bpffs', argv, {}, true);
  if (values.help) {
    process.stdout.write(MOUNT_BPFFS_HELP);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError('mount-bpffs takes one directory\nRun "portshaper mount-bpffs --help" for usage.');
  const dir = resolve(positionals[0] ?? '/sys/fs/bpf');
  if (existsSync(dir) && onBpffs(dir)) {
    process.stdout.write(`${dir} is already on a BPF filesystem\n`);
    return 0;
  }
  mkdirSync(dir, { recursive: true });
  mountBpffs(dir);
  process.stdout.write(`mounted a BPF filesystem on ${dir}\n`);
  return 0;
}
