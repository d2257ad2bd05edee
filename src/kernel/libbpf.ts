/**
 * The one module that declares libbpf (and the few libc calls we need) through
 * koffi. Every other module calls the typed wrappers exported here; every
 * failing call becomes a KernelError carrying the operation, errno (number and
 * name) and what libbpf logged during the call.
 *
 * Why koffi and not ffi-napi: measured on this Node (20.20), ffi-napi's install
 * fails under default npm, a call costs ~45 µs against ~0.7 µs, a libbpf log
 * callback costs 23–51 ms, and upstream is abandoned (see README, design notes).
 *
 * koffi rules we follow: optional opts are passed as null; nothing here is
 * called from worker threads or through `.async` (libbpf's print callback must
 * run on the thread that registered it); per-CPU values are
 * roundup(value_size, 8) × possible CPUs; lookup_batch ends with ENOENT.
 */
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { CODE, KernelError, type ErrorCode } from '../errors.js';
import { errnoName, vsnprintf } from './libc.js';
import { libbpf, onFirstUse } from './native.js';

export { closeFd, errnoName, ifNameToIndex, mmapMap, mountBpffs, setNetns, type MappedMap } from './libc.js';

/** Opaque libbpf handles. */
export type BpfObject = unknown;
export type BpfMap = unknown;
export type BpfProgram = unknown;

// struct bpf_tc_hook / bpf_tc_opts from libbpf.h (the trailing `size_t :0`
// rounds both to a multiple of 8; `sz` must hold the struct size).
const TcHook = koffi.struct('bpf_tc_hook', {
  sz: 'size_t',
  ifindex: 'int',
  attach_point: 'int',
  parent: 'uint32_t',
  _pad: 'uint32_t',
});
const TcOpts = koffi.struct('bpf_tc_opts', {
  sz: 'size_t',
  prog_fd: 'int',
  flags: 'uint32_t',
  prog_id: 'uint32_t',
  handle: 'uint32_t',
  priority: 'uint32_t',
  _pad: 'uint32_t',
});
const TC_HOOK_SIZE = koffi.sizeof(TcHook);
const TC_OPTS_SIZE = koffi.sizeof(TcOpts);

// struct bpf_test_run_opts (libbpf 1.1; last field batch_size).
const TestRunOpts = koffi.struct('bpf_test_run_opts', {
  sz: 'size_t',
  data_in: 'void *',
  data_out: 'void *',
  data_size_in: 'uint32_t',
  data_size_out: 'uint32_t',
  ctx_in: 'void *',
  ctx_out: 'void *',
  ctx_size_in: 'uint32_t',
  ctx_size_out: 'uint32_t',
  retval: 'uint32_t',
  repeat: 'int',
  duration: 'uint32_t',
  flags: 'uint32_t',
  cpu: 'uint32_t',
  batch_size: 'uint32_t',
});
const TEST_RUN_OPTS_SIZE = koffi.sizeof(TestRunOpts);

// libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *, va_list).
// On x86_64 a va_list parameter is a pointer to __va_list_tag, so vsnprintf
// can format it directly. (aarch64 passes va_list by value: see README.)
const PrintFn = koffi.proto('int libbpf_print_fn(int level, const char *fmt, void *args)');

// Bound on first call, not at import: importing this module must work on a host without libbpf.
function bindLibbpf() {
  const lib = libbpf();
  const fn = {
    libbpf_set_print: lib.func('void *libbpf_set_print(libbpf_print_fn *fn)'),
    libbpf_num_possible_cpus: lib.func('int libbpf_num_possible_cpus()'),
    libbpf_major_version: lib.func('uint32_t libbpf_major_version()'),
    libbpf_minor_version: lib.func('uint32_t libbpf_minor_version()'),
    bpf_object__open_file: lib.func('void *bpf_object__open_file(const char *path, void *opts)'),
    bpf_object__load: lib.func('int bpf_object__load(void *obj)'),
    bpf_object__close: lib.func('void bpf_object__close(void *obj)'),
    bpf_object__find_map_by_name: lib.func('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
    bpf_object__find_program_by_name: lib.func('void *bpf_object__find_program_by_name(void *obj, const char *name)'),
    bpf_map__set_pin_path: lib.func('int bpf_map__set_pin_path(void *map, const char *path)'),
    bpf_map__set_initial_value: lib.func('int bpf_map__set_initial_value(void *map, const void *data, size_t size)'),
    bpf_map__set_max_entries: lib.func('int bpf_map__set_max_entries(void *map, uint32_t max_entries)'),
    bpf_map__fd: lib.func('int bpf_map__fd(void *map)'),
    bpf_program__fd: lib.func('int bpf_program__fd(void *prog)'),
    bpf_obj_get: lib.func('int bpf_obj_get(const char *path)'),
    bpf_map_lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
    bpf_map_update_elem: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
    bpf_map_delete_elem: lib.func('int bpf_map_delete_elem(int fd, const void *key)'),
    bpf_map_lookup_batch: lib.func(
      'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, void *opts)',
    ),
    bpf_map_update_batch: lib.func(
      'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, void *opts)',
    ),
    bpf_tc_hook_create: lib.func('int bpf_tc_hook_create(bpf_tc_hook *hook)'),
    bpf_tc_attach: lib.func('int bpf_tc_attach(bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
    bpf_tc_detach: lib.func('int bpf_tc_detach(bpf_tc_hook *hook, bpf_tc_opts *opts)'),
    bpf_tc_query: lib.func('int bpf_tc_query(bpf_tc_hook *hook, _Inout_ bpf_tc_opts *opts)'),
    bpf_obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)'),
    bpf_prog_test_run_opts: lib.func('int bpf_prog_test_run_opts(int prog_fd, _Inout_ bpf_test_run_opts *opts)'),
  };
  fn.libbpf_set_print(printCallback());
  return fn;
}
const fn = onFirstUse(bindLibbpf);

// ---------------------------------------------------------------------------
// libbpf's log: one print callback for the life of the process. Messages are
// kept in a ring; each wrapped call takes what was logged during it so that
// an error (a verifier rejection above all) carries its own log.

const LOG_LIMIT = 1 << 20;
let logBuffer = '';
const printBuf = Buffer.alloc(64 * 1024);

/** libbpf print levels: 0 warn, 1 info, 2 debug. Debug is dropped unless asked for. */
const logLevel = process.env.PORTSHAPER_LIBBPF_DEBUG ? 2 : 1;

/** libbpf's print callback, registered once, when libbpf is bound. */
function printCallback(): ReturnType<typeof koffi.register> {
  return koffi.register((level: number, fmt: string, args: unknown): number => {
    if (level > logLevel) return 0;
    const n = vsnprintf(printBuf, printBuf.length, fmt, args);
    if (n > 0) {
      logBuffer += printBuf.toString('utf8', 0, Math.min(n, printBuf.length - 1));
      if (logBuffer.length > LOG_LIMIT) logBuffer = logBuffer.slice(-LOG_LIMIT);
    }
    return 0;
  }, koffi.pointer(PrintFn));
}

/** Take (and clear) what libbpf logged since the last call. */
export function takeLibbpfLog(): string {
  const log = logBuffer;
  logBuffer = '';
  return log;
}

// ---------------------------------------------------------------------------
// errno handling


export const ENOENT = osConstants.errno.ENOENT;
export const EEXIST = osConstants.errno.EEXIST;
export const EPERM = osConstants.errno.EPERM;
export const ENODEV = osConstants.errno.ENODEV;

/** Fix hints for errors an operator meets in practice, by errno. */
function hintFor(operation: string, errno: number): string | undefined {
  switch (errnoName(errno)) {
    case 'EPERM':
    case 'EACCES':
      return 'needs root or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN (and CAP_SYS_ADMIN for bpffs mounts)';
    case 'ENODEV':
      return 'the interface disappeared; check "ip -br link"';
    case 'EINVAL':
      return operation.startsWith('load')
        ? 'the kernel rejected the object; the libbpf log above says why (is BTF enabled: /sys/kernel/btf/vmlinux?)'
        : undefined;
    case 'EOPNOTSUPP':
      return 'the kernel lacks a feature portshaper needs (clsact/cls_bpf: CONFIG_NET_CLS_BPF, CONFIG_NET_SCH_INGRESS)';
    default:
      return undefined;
  }
}

/** Build the KernelError for a failed operation (errno positive or negative). */
export function kernelError(operation: string, errno: number, code: ErrorCode = CODE.PS_KERNEL): KernelError {
  const e = Math.abs(errno);
  return new KernelError(code, operation, e, errnoName(e), takeLibbpfLog(), hintFor(operation, e));
}

/** Throw for a libbpf int return (<0 means -errno); otherwise return it. */
function check(operation: string, ret: number, code?: ErrorCode): number {
  if (ret < 0) {
    const errno = ret === -1 ? koffi.errno() : -ret;
    // Missing privileges are the commonest failure: give them one code.
    throw kernelError(operation, errno, errno === EPERM ? CODE.PS_PERMISSION : code);
  }
  return ret;
}

/** Throw for a libbpf pointer return (NULL means failure, errno set). */
function checkPtr<T>(operation: string, ptr: T | null, code?: ErrorCode): T {
  if (ptr === null) throw kernelError(operation, koffi.errno() || 22, code);
  return ptr;
}

// ---------------------------------------------------------------------------
// objects, maps, programs

/** libbpf's version, e.g. "1.1". */
export function libbpfVersion(): string {
  return `${fn().libbpf_major_version()}.${fn().libbpf_minor_version()}`;
}

/** Number of possible CPUs: the multiplier of every per-CPU value. */
export function possibleCpus(): number {
  return check('libbpf_num_possible_cpus', fn().libbpf_num_possible_cpus() as number);
}

/** Open (parse, not load) a BPF ELF object. */
export function openObject(path: string): BpfObject {
  takeLibbpfLog();
  return checkPtr(`open BPF object ${path}`, fn().bpf_object__open_file(path, null), CODE.PS_BPF_OPEN);
}

/** Load every map and program of an opened object into the kernel (runs the verifier). */
export function loadObject(obj: BpfObject, what: string): void {
  takeLibbpfLog();
  check(`load ${what}`, fn().bpf_object__load(obj) as number, CODE.PS_BPF_LOAD);
  takeLibbpfLog();
}

/** Free an object: closes its fds (pins and tc attachments keep what they hold alive). */
export function closeObject(obj: BpfObject): void {
  fn().bpf_object__close(obj);
}

/** Find a map by name (internal maps by section name, e.g. ".rodata"). */
export function findMap(obj: BpfObject, name: string): BpfMap {
  return checkPtr(`find map ${name}`, fn().bpf_object__find_map_by_name(obj, name) as BpfMap | null, CODE.PS_BPF_OBJECT);
}

/** Find a program by its C function name. */
export function findProgram(obj: BpfObject, name: string): BpfProgram {
  return checkPtr(
    `find program ${name}`,
    fn().bpf_object__find_program_by_name(obj, name) as BpfProgram | null,
    CODE.PS_BPF_OBJECT,
  );
}

/** Pin (or, if the pin exists and matches, reuse) this map at path when the object loads. */
export function setPinPath(map: BpfMap, path: string): void {
  check(`set pin path ${path}`, fn().bpf_map__set_pin_path(map, path) as number);
}

/** Replace a global-data map's initial contents (e.g. .rodata constants) before load. */
/** Size a map before the object is loaded. */
export function setMaxEntries(map: BpfMap, entries: number, what: string): void {
  check(`size ${what} to ${entries} entries`, fn().bpf_map__set_max_entries(map, entries) as number);
}

export function setInitialValue(map: BpfMap, data: Buffer): void {
  check('set initial value', fn().bpf_map__set_initial_value(map, data, data.length) as number);
}

/** The fd of a loaded map. */
export function mapFd(map: BpfMap): number {
  return check('bpf_map__fd', fn().bpf_map__fd(map) as number);
}

/** The fd of a loaded program. */
export function programFd(prog: BpfProgram): number {
  return check('bpf_program__fd', fn().bpf_program__fd(prog) as number);
}

/** Shape of a map as the kernel reports it (struct bpf_map_info). */
export interface MapInfo {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/** Ask the kernel for a map's type and sizes (to check a pin before reading it). */
export function mapInfo(fd: number, what: string): MapInfo {
  const info = Buffer.alloc(96);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  check(`get info of ${what}`, fn().bpf_obj_get_info_by_fd(fd, info, len) as number);
  // struct bpf_map_info: type, id, key_size, value_size, max_entries (u32 each)
  return { type: info.readUInt32LE(0), keySize: info.readUInt32LE(8), valueSize: info.readUInt32LE(12), maxEntries: info.readUInt32LE(16) };
}

/** Open a pinned object (map or program) by its bpffs path; the caller closes the fd. */
export function objGet(path: string): number {
  return check(`open pin ${path}`, fn().bpf_obj_get(path) as number);
}


// ---------------------------------------------------------------------------
// map element operations (keys and values are caller-encoded buffers)

export const BPF_ANY = 0;

/** Look one element up; returns false when the key does not exist. */
export function lookupElem(fd: number, key: Buffer, value: Buffer, what: string): boolean {
  const ret = fn().bpf_map_lookup_elem(fd, key, value) as number;
  if (ret < 0) {
    const errno = ret === -1 ? koffi.errno() : -ret;
    if (errno === ENOENT) return false;
    throw kernelError(`lookup ${what}`, errno);
  }
  return true;
}

/** Write one element. */
export function updateElem(fd: number, key: Buffer, value: Buffer, what: string, flags = BPF_ANY): void {
  check(`update ${what}`, fn().bpf_map_update_elem(fd, key, value, flags) as number);
}

/** Delete one element; returns false when it did not exist. */
export function deleteElem(fd: number, key: Buffer, what: string): boolean {
  const ret = fn().bpf_map_delete_elem(fd, key) as number;
  if (ret < 0) {
    const errno = ret === -1 ? koffi.errno() : -ret;
    if (errno === ENOENT) return false;
    throw kernelError(`delete ${what}`, errno);
  }
  return true;
}

/**
 * Read up to `max` elements starting after batch token `inBatch` (null for the
 * start). Returns how many were read and whether the map is exhausted; the
 * kernel signals the end with ENOENT, possibly together with the last items.
 */
export function lookupBatch(
  fd: number,
  inBatch: Buffer | null,
  outBatch: Buffer,
  keys: Buffer,
  values: Buffer,
  max: number,
  what: string,
): { count: number; done: boolean } {
  const count = Buffer.alloc(4);
  count.writeUInt32LE(max);
  const ret = fn().bpf_map_lookup_batch(fd, inBatch, outBatch, keys, values, count, null) as number;
  const n = count.readUInt32LE();
  if (ret < 0) {
    const errno = ret === -1 ? koffi.errno() : -ret;
    if (errno === ENOENT) return { count: n, done: true };
    throw kernelError(`lookup batch ${what}`, errno);
  }
  return { count: n, done: false };
}

/** Write `count` elements in one syscall (keys and values packed back to back). */
export function updateBatch(fd: number, keys: Buffer, values: Buffer, count: number, what: string): void {
  if (count === 0) return;
  const n = Buffer.alloc(4);
  n.writeUInt32LE(count);
  check(`update batch ${what} (${count} entries)`, fn().bpf_map_update_batch(fd, keys, values, n, null) as number);
}

// ---------------------------------------------------------------------------
// tc clsact (cls_bpf, direct-action) through libbpf's netlink helpers

export const BPF_TC_INGRESS = 1;
export const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;

export type TcHookPoint = typeof BPF_TC_INGRESS | typeof BPF_TC_EGRESS;

/** Our filter's identity on a clsact hook. */
export interface TcFilterId {
  handle: number;
  priority: number;
}

function hook(ifindex: number, point: number) {
  return { sz: TC_HOOK_SIZE, ifindex, attach_point: point, parent: 0, _pad: 0 };
}

function opts(id: TcFilterId, progFd = 0, flags = 0) {
  return { sz: TC_OPTS_SIZE, prog_fd: progFd, flags, prog_id: 0, handle: id.handle, priority: id.priority, _pad: 0 };
}

/** Create the clsact qdisc on an interface; returns false if it already existed. */
export function tcEnsureClsact(ifindex: number, ifname: string): boolean {
  const ret = fn().bpf_tc_hook_create(hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)) as number;
  if (ret === -EEXIST) return false;
  check(`create clsact qdisc on ${ifname}`, ret, CODE.PS_TC_ATTACH);
  return true;
}

/** Attach (or atomically replace) our filter on one hook; returns the kernel's program id. */
export function tcAttach(ifindex: number, point: TcHookPoint, id: TcFilterId, progFd: number, what: string): number {
  const o = opts(id, progFd, BPF_TC_F_REPLACE);
  check(`attach ${what}`, fn().bpf_tc_attach(hook(ifindex, point), o) as number, CODE.PS_TC_ATTACH);
  return o.prog_id;
}

/**
 * Remove our filter from one hook; returns false if it was not there — also
 * when the interface itself is gone (ENODEV): its filters went with it.
 */
export function tcDetach(ifindex: number, point: TcHookPoint, id: TcFilterId, what: string): boolean {
  const ret = fn().bpf_tc_detach(hook(ifindex, point), opts(id)) as number;
  if (ret === -ENOENT || ret === -ENODEV) return false;
  check(`detach ${what}`, ret, CODE.PS_TC_DETACH);
  return true;
}

/** The program id attached as our filter on a hook, or 0 if none is. */
export function tcQuery(ifindex: number, point: TcHookPoint, id: TcFilterId, what: string): number {
  const o = opts(id);
  const ret = fn().bpf_tc_query(hook(ifindex, point), o) as number;
  if (ret === -ENOENT || ret === -osConstants.errno.EINVAL) return 0;
  check(`query ${what}`, ret, CODE.PS_TC_QUERY);
  return o.prog_id;
}

// ---------------------------------------------------------------------------
// BPF_PROG_TEST_RUN

/** Result of running a program once on a crafted frame. */
export interface TestRunResult {
  retval: number;
  durationNs: number;
  /** The frame as the program left it (ECN marks, pulls). */
  frameOut: Buffer;
  /** The __sk_buff image after the run (priority, mark...), when a ctx was given. */
  ctxOut: Buffer | null;
}

/**
 * Run a tc program on one frame with BPF_PROG_TEST_RUN. `ctx` is a struct
 * __sk_buff image (ifindex, gso_segs, gso_size... are honoured by the kernel).
 */
export function testRun(progFd: number, frame: Buffer, ctx: Buffer | null, repeat = 1): TestRunResult {
  const frameOut = Buffer.alloc(frame.length + 256);
  const ctxOut = ctx ? Buffer.alloc(ctx.length) : null;
  const o = {
    sz: TEST_RUN_OPTS_SIZE,
    data_in: frame,
    data_out: frameOut,
    data_size_in: frame.length,
    data_size_out: frameOut.length,
    ctx_in: ctx,
    ctx_out: ctxOut,
    ctx_size_in: ctx ? ctx.length : 0,
    ctx_size_out: ctxOut ? ctxOut.length : 0,
    retval: 0,
    repeat,
    duration: 0,
    flags: 0,
    cpu: 0,
    batch_size: 0,
  };
  check('BPF_PROG_TEST_RUN', fn().bpf_prog_test_run_opts(progFd, o) as number, CODE.PS_TEST_RUN);
  return { retval: o.retval | 0, durationNs: o.duration, frameOut: frameOut.subarray(0, o.data_size_out), ctxOut };
}
