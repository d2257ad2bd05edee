/**
 * Prerequisite checks for kernel tests, benchmarks and the demo: root and
 * the tools they run. No vitest import, so scripts outside a test run
 * (make bench, make demo) can use it.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

// Root's login PATH has the sbin directories, but a CI runner or `sudo -E`
// may not; ip/tc/nft/bpftool live there on Debian.
for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) {
  const parts = (process.env.PATH ?? '').split(delimiter);
  if (!parts.includes(dir)) process.env.PATH = [...parts.filter(Boolean), dir].join(delimiter);
}

/** Tools every kernel test needs (binary name → Debian package that provides it). */
export const KERNEL_TOOLS: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  tc: 'iproute2',
  iperf3: 'iperf3',
  nft: 'nftables',
  bpftool: 'bpftool',
};

/** Extra tools some kernel tests need; pass their names to describeKernel's `tools`. */
export const OPTIONAL_TOOLS: Readonly<Record<string, string>> = {
  ping: 'iputils-ping',
  clang: 'clang',
  ethtool: 'ethtool',
  taskset: 'util-linux',
  nsenter: 'util-linux',
  openssl: 'openssl',
  curl: 'curl',
};

/** True when CI=true, i.e. when a missing prerequisite must fail rather than skip. */
export function isCI(): boolean {
  return process.env.CI === 'true';
}

/** Absolute path of an executable found on PATH, or undefined. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** Human-readable list of what is missing for kernel tests (empty when all is there). */
export function missingPrerequisites(extraTools: readonly string[] = []): string[] {
  const missing: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    missing.push('root (kernel tests create namespaces and load BPF; run them as root)');
  }
  for (const tool of [...Object.keys(KERNEL_TOOLS), ...extraTools]) {
    if (!which(tool)) {
      const pkg = KERNEL_TOOLS[tool] ?? OPTIONAL_TOOLS[tool] ?? tool;
      missing.push(`${tool} (Debian package ${pkg})`);
    }
  }
  return missing;
}

/** Message explaining the missing prerequisites and how to install them. */
export function prerequisiteMessage(missing: readonly string[]): string {
  return (
    `kernel test prerequisites missing: ${missing.join('; ')}. ` +
    'Install them with `make setup` (as root) and run the tests as root.'
  );
}

/** True when the kernel tests can run here (root and all required tools present). */
export function kernelTestsEnabled(extraTools: readonly string[] = []): boolean {
  return missingPrerequisites(extraTools).length === 0;
}
