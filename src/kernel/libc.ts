/**
 * The few libc calls portshaper needs, bound with koffi. Kept apart from
 * libbpf.ts so that commands that never touch BPF (validate) do not need
 * libbpf installed.
 */
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { CODE, KernelError, type ErrorCode } from '../errors.js';
import { libc, onFirstUse } from './native.js';

// Bound on first call, not at import (see native.ts).
const fn = onFirstUse(() => {
  const lib = libc();
  return {
    close: lib.func('int close(int fd)'),
    vsnprintf: lib.func('int vsnprintf(_Out_ uint8_t *buf, size_t size, const char *fmt, void *args)'),
    if_nametoindex: lib.func('unsigned int if_nametoindex(const char *name)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    setns: lib.func('int setns(int fd, int nstype)'),
    mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)'),
  };
});

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, num]) => [num as number, name]),
);

/** The symbolic name of an errno value, e.g. 1 → "EPERM". */
export function errnoName(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

function libcError(operation: string, code: ErrorCode): KernelError {
  const errno = koffi.errno();
  return new KernelError(code, operation, errno, errnoName(errno), '');
}

/** vsnprintf(3) for libbpf's print callback (va_list passed through as a pointer on x86_64). */
export function vsnprintf(buf: Buffer, size: number, fmt: string, args: unknown): number {
  return fn().vsnprintf(buf, size, fmt, args) as number;
}

/** Close a file descriptor we own. */
export function closeFd(fd: number): void {
  fn().close(fd);
}

/** ifindex of an interface in the current network namespace (0 if absent). */
export function ifNameToIndex(name: string): number {
  return fn().if_nametoindex(name) as number;
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;

/** A BPF_F_MMAPABLE array mapped into our memory; call unmap() exactly once, after the last use of `buffer`. */
export interface MappedMap {
  buffer: ArrayBuffer;
  unmap(): void;
}

/** Map a BPF_F_MMAPABLE array into our memory (reads and u32 stores without syscalls). */
export function mmapMap(fd: number, bytes: number, what: string): MappedMap {
  const ptr = fn().mmap(null, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (ptr === null || koffi.address(ptr) === 0xffffffffffffffffn) throw libcError(`mmap ${what}`, CODE.PS_KERNEL);
  return { buffer: koffi.view(ptr, bytes), unmap: () => void fn().munmap(ptr, bytes) };
}

const CLONE_NEWNET = 0x40000000;

/** setns(2) the calling thread into the network namespace open at fd. */
export function setNetns(fd: number, what: string): void {
  if ((fn().setns(fd, CLONE_NEWNET) as number) !== 0) throw libcError(`enter network namespace ${what}`, CODE.PS_NETNS);
}

/** mount(2) a bpf filesystem at target. */
export function mountBpffs(target: string): void {
  if ((fn().mount('bpf', target, 'bpf', 0, null) as number) !== 0) throw libcError(`mount bpffs at ${target}`, CODE.PS_BPFFS);
}
