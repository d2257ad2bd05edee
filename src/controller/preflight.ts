/**
 * Checks run before the agent touches the kernel, so that a missing
 * privilege or kernel feature is reported as what it is, with the fix,
 * instead of as an EPERM deep inside libbpf.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { CODE, PermissionError, PortshaperError } from '../errors.js';

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCapabilities(): bigint {
  const status = readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

function has(caps: bigint, cap: number): boolean {
  return (caps & (1n << BigInt(cap))) !== 0n;
}

/** Kernel release as [major, minor]. */
export function kernelVersion(text = release()): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * The oldest kernel with everything the data plane uses (see README,
 * Requirements): 5.12 for BPF atomics (the bucket's compare-and-swap), on
 * top of 5.8's batch map operations, mmapable arrays and CAP_BPF.
 */
export const MIN_KERNEL: [number, number] = [5, 12];

/** Throw a clear error when this process cannot run the data plane; returns warnings. */
export function preflight(operation: string): string[] {
  const warnings: string[] = [];
  const [major, minor] = kernelVersion();
  if (major < MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor < MIN_KERNEL[1])) {
    throw new PortshaperError(
      CODE.PS_KERNEL_TOO_OLD,
      `Linux ${release()} is too old: portshaper needs ${MIN_KERNEL.join('.')} or newer ` +
        '(BPF atomics for the lock-free bucket: 5.12; batch map operations, mmapable arrays, __sk_buff.gso_size)',
      { hint: 'upgrade the kernel, e.g. Debian 12 (6.1), Ubuntu 22.04 (5.15) or a backports kernel' },
    );
  }
  if (!existsSync('/sys/kernel/btf/vmlinux')) {
    // Not fatal by itself (the object carries its own BTF), but kernels built
    // without CONFIG_DEBUG_INFO_BTF usually lack the BTF support that
    // bpf_spin_lock needs.
    warnings.push('the kernel exposes no BTF (/sys/kernel/btf/vmlinux); if loading fails, use a kernel built with CONFIG_DEBUG_INFO_BTF');
  }
  const caps = effectiveCapabilities();
  // Without CAP_PERFMON the verifier applies its Spectre v1 restrictions to
  // pointer arithmetic, and our packet parser is refused (measured on 6.18).
  const bpfOk = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
  if (!bpfOk || !has(caps, CAP_NET_ADMIN)) throw new PermissionError(operation);
  return warnings;
}
