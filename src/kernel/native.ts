/**
 * The one loader of shared libraries (libbpf, libc). A library is opened on
 * first use, never at import: `portshaper validate` runs in CI containers
 * without libbpf, and the unit tests import kernel modules on such hosts too.
 * Each library can be named by an environment variable; otherwise a list of
 * names and paths is tried, and the error lists every one with its reason.
 */
import koffi from 'koffi';
import { CODE, LibraryNotFoundError, type ErrorCode, type LibraryAttempt } from '../errors.js';

/** Where to find one library and what to say when it is missing. */
export interface LibrarySpec {
  /** Its name in messages, e.g. "libbpf". */
  name: string;
  /** The file the override should name, e.g. "libbpf.so.1". */
  file: string;
  /** Environment variable naming the one file to load instead of searching. */
  env: string;
  /** Names (resolved by the dynamic loader's search path) and absolute paths, tried in order. */
  candidates: readonly string[];
  /** The error code when none loads. */
  code: ErrorCode;
  /** How to install it, e.g. "apt-get install libbpf1". */
  install: string;
}

/** Load a library now: the override alone when set, else the first candidate that loads. */
export function loadLibrary(spec: LibrarySpec, env: NodeJS.ProcessEnv = process.env): koffi.IKoffiLib {
  const override = env[spec.env];
  // An override is the one library to use: when it does not load we fail
  // rather than fall back to the list, so a wrong path is reported instead of
  // being hidden behind another copy of the library. (Tests rely on this to
  // make libbpf unavailable on a host that has it.)
  const paths = override ? [override] : spec.candidates;
  const tried: LibraryAttempt[] = [];
  for (const path of paths) {
    try {
      return koffi.load(path);
    } catch (err) {
      tried.push({ path, reason: err instanceof Error ? err.message.split('\n', 1)[0]! : String(err) });
    }
  }
  const hint = override
    ? `set ${spec.env} to the path of ${spec.file}, or unset it to search ${spec.candidates.join(', ')}`
    : `${spec.install}, or set ${spec.env} to the path of ${spec.file}`;
  throw new LibraryNotFoundError(spec.code, override ? `${spec.name} from ${spec.env}` : spec.name, tried, hint);
}

/**
 * A value built on first use and kept: a library handle, or the table of its
 * functions. A failure is not kept, so the next use tries again.
 */
export function onFirstUse<T>(build: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= build());
}

/** libbpf 1.x, as Debian/Ubuntu (libbpf1), Fedora and Arch install it. */
export const LIBBPF: LibrarySpec = {
  name: 'libbpf',
  file: 'libbpf.so.1',
  env: 'PORTSHAPER_LIBBPF',
  candidates: ['libbpf.so.1', '/usr/lib/x86_64-linux-gnu/libbpf.so.1', '/usr/lib64/libbpf.so.1', '/usr/lib/libbpf.so.1'],
  code: CODE.PS_LIBBPF_NOT_FOUND,
  install: 'install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1; Fedora: dnf install libbpf)',
};

/** glibc: the libc calls (mmap, setns, if_nametoindex, netlink sockets) are declared with its types. */
export const LIBC: LibrarySpec = {
  name: 'the C library',
  file: 'libc.so.6',
  env: 'PORTSHAPER_LIBC',
  candidates: ['libc.so.6'],
  code: CODE.PS_LIBC_NOT_FOUND,
  install: 'run on a glibc system',
};

/** libbpf, opened on first use. */
export const libbpf = onFirstUse(() => loadLibrary(LIBBPF));

/** libc, opened on first use. */
export const libc = onFirstUse(() => loadLibrary(LIBC));
